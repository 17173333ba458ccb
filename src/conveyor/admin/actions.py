"""Operator actions on jobs: retry, replay the dead-letter queue, delete, cancel.

Single-job actions lock the row first so a refusal can say exactly why (the job is
running, already queued, ...); the change itself is still one guarded statement, and the
audit row is written in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from conveyor.admin.base import (
    SAMPLE,
    AdminBase,
    check_actor,
    check_job_id,
    check_job_ids,
    check_optional_queue,
    check_text,
)
from conveyor.admin.errors import AdminConflict, AdminForbidden, AdminNotFound
from conveyor.admin.models import BulkResult, JobActionResult
from conveyor.store import Store
from conveyor.store.admin_writes import ChangedJob, LockedJob
from conveyor.vocabulary import (
    CANCELLED,
    DEAD,
    DISPATCHED,
    QUEUED,
    RETRY_SCHEDULED,
    RUNNING,
    TERMINAL,
)

# One guarded statement over many ids (with the log message); returns the jobs it changed.
Change = Callable[[Store, list[UUID], str], Awaitable[list[ChangedJob]]]
PURGE_NEEDS_ADMIN = (
    "deleting a dead job purges it from the dead-letter queue, which needs the admin role"
)


def _shown(job: LockedJob) -> str:
    return RETRY_SCHEDULED if job.status == QUEUED and job.attempt > 0 else job.status


class JobActionsMixin(AdminBase):
    async def _locked_job(self, tx: Store, job_id: UUID) -> LockedJob:
        job = await tx.lock_job(job_id, self.scope)
        if job is None:
            raise AdminNotFound(f"no job with id {job_id}")
        return job

    async def retry(self, job_id: UUID | str, actor: str) -> JobActionResult:
        """Run a dead, cancelled or completed job again now (or cut a retry backoff short),
        with its attempt counter reset to 0. Refused for dispatched and running jobs."""
        identifier = check_job_id(job_id)
        actor = check_actor(actor)
        async with self.transaction() as tx:
            job = await self._locked_job(tx, identifier)
            previous = _shown(job)
            if job.status == RUNNING:
                raise AdminConflict(
                    f"job {identifier} is running: wait for it to finish, or cancel it first"
                )
            if job.status == DISPATCHED:
                raise AdminConflict(
                    f"job {identifier} is dispatched and about to run: it cannot be retried "
                    "(cancel it first if it must not run)"
                )
            if previous == QUEUED:
                raise AdminConflict(f"job {identifier} is already queued and waiting to run")
            await tx.retry_jobs([identifier], f"retried by {actor}", self.scope)
            return await self._done(
                tx, actor, "retry", job, QUEUED, f"job {identifier} ({previous}) queued to run "
                "again now",
            )  # fmt: skip

    async def retry_jobs(self, ids: Sequence[UUID | str], actor: str) -> BulkResult:
        """`retry` for many jobs in one statement; ids that do not qualify are `skipped`."""
        return await self._bulk(
            "retry_jobs", ids, actor, "retried",
            lambda tx, batch, why: tx.retry_jobs(batch, why, self.scope),
            "queued {done} job(s) to run again; skipped {skipped} (missing, waiting or running)",
        )  # fmt: skip

    async def retry_dead(
        self,
        actor: str,
        queue: str | None = None,
        task: str | None = None,
        ids: Sequence[UUID | str] | None = None,
        dry_run: bool = False,
    ) -> BulkResult:
        """Replay dead jobs (all, or of one queue / task / these ids) as new attempts.
        Exactly once under concurrency: each dead job is replayed by one call only."""
        actor = check_actor(actor)
        queue = check_optional_queue(queue)
        task = check_text(task, "task")
        identifiers = None if ids is None else check_job_ids(ids)
        message = f"replayed from the dead-letter queue by {actor}"
        scope = {
            "queue": queue,
            "task": task,
            "ids": None if identifiers is None else len(identifiers),
        }
        async with self.transaction() as tx:
            if queue is not None:
                await self.require_queue(tx, queue)
            if dry_run:
                found = await tx.preview_dead(
                    queue=queue, task=task, ids=identifiers, sample=SAMPLE, scope=self.scope
                )
            else:
                found = await tx.retry_dead(
                    queue=queue,
                    task=task,
                    ids=identifiers,
                    sample=SAMPLE,
                    message=message,
                    scope=self.scope,
                )
                await tx.record_audit(
                    actor,
                    "retry_dead",
                    f"queue:{queue}" if queue else "dead",
                    {**scope, "count": found.count},
                    "ok" if found.count else "noop",
                    **self.audit_scope(found.tenants, found.queues or ([queue] if queue else [])),
                )
        verb = "would replay" if dry_run else "replayed"
        return BulkResult(
            action="retry_dead",
            dry_run=dry_run,
            count=found.count,
            sample=list(found.sample),
            queue=queue,
            message=f"{verb} {found.count} dead job(s)",
        )

    async def delete(
        self, job_id: UUID | str, actor: str, purge_dead: bool = False
    ) -> JobActionResult:
        """Delete a job that is not running (a running one must be cancelled first). A
        dead one only with `purge_dead` (the caller may purge the dead-letter queue)."""
        identifier = check_job_id(job_id)
        actor = check_actor(actor)
        async with self.transaction() as tx:
            job = await self._locked_job(tx, identifier)
            previous = _shown(job)
            if job.status == RUNNING:
                raise AdminConflict(
                    f"job {identifier} is running: cancel it first "
                    f"(conveyor admin cancel {identifier}), then delete it"
                )
            if job.status == DEAD and not purge_dead:
                raise AdminForbidden(f"job {identifier} is dead: {PURGE_NEEDS_ADMIN}")
            await tx.delete_jobs([identifier], include_dead=purge_dead, scope=self.scope)
            return await self._done(
                tx, actor, "delete", job, "deleted", f"job {identifier} ({previous}) deleted"
            )

    async def delete_jobs(
        self, ids: Sequence[UUID | str], actor: str, purge_dead: bool = False
    ) -> BulkResult:
        """Delete many jobs; running and missing ones (and dead ones, without
        `purge_dead`) are `skipped`."""
        why = (
            "missing or running" if purge_dead else f"missing, running or dead: {PURGE_NEEDS_ADMIN}"
        )
        return await self._bulk(
            "delete_jobs", ids, actor, "deleted",
            lambda tx, batch, _: tx.delete_jobs(batch, include_dead=purge_dead, scope=self.scope),
            "deleted {done} job(s); skipped {skipped} (" + why + ")",
        )  # fmt: skip

    async def _done(
        self, tx: Store, actor: str, action: str, job: LockedJob, status: str, message: str
    ) -> JobActionResult:
        """The audit row (in the caller's transaction) and the result of a one-job action."""
        previous = _shown(job)
        await tx.record_audit(
            actor, action, f"job:{job.id}",
            {"previous_status": previous, "queue": job.queue_name}, "ok",
            **self.audit_scope([job.tenant], [job.queue_name]),
        )  # fmt: skip
        return JobActionResult(
            action=action, job_id=job.id, changed=True, previous_status=previous,
            status=status, message=message,
        )  # fmt: skip

    async def _bulk(
        self, action: str, ids: Sequence[UUID | str], actor: str, verb: str, change: Change,
        message: str,
    ) -> BulkResult:  # fmt: skip
        """One guarded statement over many ids, and one audit row saying what it did."""
        identifiers = check_job_ids(ids)
        actor = check_actor(actor)
        async with self.transaction() as tx:
            changed = await change(tx, identifiers, f"{verb} by {actor}")
            done = {job.id for job in changed}
            skipped = [job_id for job_id in identifiers if job_id not in done]
            detail = {
                "requested": len(identifiers),
                verb: len(done),
                "skipped": [str(job_id) for job_id in skipped[:SAMPLE]],
                # Every changed job, so the audit log can say what a bulk action undid.
                "jobs": [{"id": str(job.id), "previous_status": job.previous} for job in changed],
            }
            result = "ok" if done else "noop"
            touched = self.audit_scope(
                [job.tenant for job in changed], [job.queue_name for job in changed]
            )
            await tx.record_audit(
                actor, action, f"jobs:{len(identifiers)}", detail, result, **touched
            )
        return BulkResult(
            action=action,
            dry_run=False,
            count=len(done),
            sample=sorted(done)[:SAMPLE],
            skipped=skipped,
            message=message.format(done=len(done), skipped=len(skipped)),
        )

    async def cancel(self, job_id: UUID | str, actor: str) -> JobActionResult:
        """As the client's cancel: a waiting job ends cancelled at once (with a job_logs
        row); a running one is asked to stop and ends when its handler does."""
        identifier = check_job_id(job_id)
        actor = check_actor(actor)
        async with self.transaction() as tx:
            job = await self._locked_job(tx, identifier)
            previous = _shown(job)
            if job.status in TERMINAL:
                raise AdminConflict(
                    f"job {identifier} already ended ({previous}): nothing to cancel"
                )
            if job.status == RUNNING and job.cancel_requested:
                await tx.record_audit(
                    actor,
                    "cancel",
                    f"job:{identifier}",
                    {"previous_status": previous},
                    "noop",
                    **self.audit_scope([job.tenant], [job.queue_name]),
                )
                return JobActionResult(
                    action="cancel",
                    job_id=identifier,
                    changed=False,
                    previous_status=previous,
                    status=RUNNING,
                    message=f"job {identifier} was already asked to stop",
                )
            await tx.cancel_for_operator(identifier, f"cancelled by {actor}")
            await tx.record_audit(
                actor,
                "cancel",
                f"job:{identifier}",
                {"previous_status": previous, "queue": job.queue_name},
                "ok",
                **self.audit_scope([job.tenant], [job.queue_name]),
            )
        if job.status == RUNNING:
            return JobActionResult(
                action="cancel",
                job_id=identifier,
                changed=True,
                previous_status=previous,
                status=RUNNING,
                message=f"job {identifier} is running and was asked to stop",
            )
        return JobActionResult(
            action="cancel",
            job_id=identifier,
            changed=True,
            previous_status=previous,
            status=CANCELLED,
            message=f"job {identifier} ({previous}) cancelled",
        )
