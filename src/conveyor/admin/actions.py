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
from conveyor.admin.errors import AdminConflict, AdminNotFound
from conveyor.admin.models import BulkResult, JobActionResult
from conveyor.store import Store
from conveyor.store.admin_writes import LockedJob
from conveyor.vocabulary import CANCELLED, DISPATCHED, QUEUED, RETRY_SCHEDULED, RUNNING, TERMINAL

# One guarded statement over many ids (with the log message); returns the ids it changed.
Change = Callable[[Store, list[UUID], str], Awaitable[list[UUID]]]


def _shown(job: LockedJob) -> str:
    return RETRY_SCHEDULED if job.status == QUEUED and job.attempt > 0 else job.status


class JobActionsMixin(AdminBase):
    async def _locked_job(self, tx: Store, job_id: UUID) -> LockedJob:
        job = await tx.lock_job(job_id)
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
            await tx.retry_jobs([identifier], f"retried by {actor}")
            return await self._done(
                tx, actor, "retry", job, QUEUED, f"job {identifier} ({previous}) queued to run "
                "again now",
            )  # fmt: skip

    async def retry_jobs(self, ids: Sequence[UUID | str], actor: str) -> BulkResult:
        """`retry` for many jobs in one statement; ids that do not qualify are `skipped`."""
        return await self._bulk(
            "retry_jobs", ids, actor, "retried", lambda tx, batch, why: tx.retry_jobs(batch, why),
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
                    queue=queue, task=task, ids=identifiers, sample=SAMPLE
                )
            else:
                found = await tx.retry_dead(
                    queue=queue, task=task, ids=identifiers, sample=SAMPLE, message=message
                )
                await tx.record_audit(
                    actor,
                    "retry_dead",
                    f"queue:{queue}" if queue else "dead",
                    {**scope, "count": found.count},
                    "ok" if found.count else "noop",
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

    async def delete(self, job_id: UUID | str, actor: str) -> JobActionResult:
        """Delete a job that is not running (a running one must be cancelled first)."""
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
            await tx.delete_jobs([identifier])
            return await self._done(
                tx, actor, "delete", job, "deleted", f"job {identifier} ({previous}) deleted"
            )

    async def delete_jobs(self, ids: Sequence[UUID | str], actor: str) -> BulkResult:
        """Delete many jobs; running (and missing) ones are `skipped`."""
        return await self._bulk(
            "delete_jobs", ids, actor, "deleted", lambda tx, batch, _: tx.delete_jobs(batch),
            "deleted {done} job(s); skipped {skipped} (missing or running)",
        )  # fmt: skip

    async def _done(
        self, tx: Store, actor: str, action: str, job: LockedJob, status: str, message: str
    ) -> JobActionResult:
        """The audit row (in the caller's transaction) and the result of a one-job action."""
        previous = _shown(job)
        await tx.record_audit(
            actor, action, f"job:{job.id}",
            {"previous_status": previous, "queue": job.queue_name}, "ok",
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
            done = set(await change(tx, identifiers, f"{verb} by {actor}"))
            skipped = [job_id for job_id in identifiers if job_id not in done]
            detail = {
                "requested": len(identifiers),
                verb: len(done),
                "skipped": [str(job_id) for job_id in skipped[:SAMPLE]],
            }
            result = "ok" if done else "noop"
            await tx.record_audit(actor, action, f"jobs:{len(identifiers)}", detail, result)
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
