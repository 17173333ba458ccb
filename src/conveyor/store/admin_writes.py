"""What operator actions change (admin_actions.sql): each method is one guarded statement,
meant to run on a store bound to the action's transaction (`store.transaction()`), together
with the locks that precede it and the audit row that records it.

Statements that take optional filters or id lists run with prepare=False, for the reason
given in `store.admin_reads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict
from uuid import UUID

from psycopg.types.json import Jsonb

from conveyor.scope import Scope
from conveyor.store.base import StoreBase


class AuditScope(TypedDict):
    """What an audit row is about (admin_audit_log shows it to scopes that cover it)."""

    tenants: list[str | None] | None
    queues: list[str] | None


@dataclass(frozen=True)
class LockedJob:
    id: UUID
    queue_name: str
    task: str
    status: str
    attempt: int
    max_attempts: int
    run_at: datetime
    cancel_requested: bool
    tenant: str | None


@dataclass(frozen=True)
class LockedQueue:
    name: str
    is_active: bool
    paused_at: datetime | None


@dataclass(frozen=True)
class DeadJobs:
    """How many dead jobs a replay or purge touched (or would), and some of their ids."""

    count: int
    sample: list[UUID]
    tenants: list[str | None]  # of the jobs touched (None: a job without tenant)
    queues: list[str]


@dataclass(frozen=True)
class ChangedJob:
    """A job a bulk action changed, and its status before (for the audit row)."""

    id: UUID
    queue_name: str
    tenant: str | None
    previous: str


class AdminWrites(StoreBase):
    async def lock_job(self, job_id: UUID, scope: Scope) -> LockedJob | None:
        """The job's row, locked until the transaction ends (None: no such job in scope)."""
        params = {"id": job_id, **scope.params}
        return await self._row("admin_lock_job", params, LockedJob, prepare=False)

    async def lock_queue(self, queue: str) -> LockedQueue | None:
        """The queue's job_queues row, locked (None: the queue has no row yet)."""
        return await self._row("admin_lock_queue", {"queue": queue}, LockedQueue, prepare=False)

    async def retry_jobs(self, ids: list[UUID], message: str, scope: Scope) -> list[ChangedJob]:
        """Queue these jobs to run again now, attempts reset; return those that qualified
        (dead, cancelled, completed, or waiting out a retry backoff; in scope)."""
        params = {"ids": ids, "message": message, **scope.params}
        return await self._rows("admin_retry_jobs", params, ChangedJob, prepare=False)

    async def job_payload(self, job_id: UUID) -> Any:
        """The stored payload of a job locked by `lock_job` (sealed fields still sealed)."""
        rows = await self._dicts("admin_job_payload", {"id": job_id})
        if not rows:
            raise LookupError(f"job {job_id} is gone")  # the caller holds its row lock
        return rows[0]["payload"]

    async def replay_edited(
        self, job_id: UUID, payload: str, message: str, scope: Scope
    ) -> ChangedJob | None:
        """Queue a dead job (in scope) to run again now with `payload` (JSON text) and its
        attempts reset; None when it is not dead (any more)."""
        params = {"id": job_id, "payload": payload, "message": message, **scope.params}
        return await self._row("admin_replay_edited", params, ChangedJob, prepare=False)

    async def delete_jobs(
        self, ids: list[UUID], *, include_dead: bool, scope: Scope
    ) -> list[ChangedJob]:
        """Delete these jobs unless running (or dead, without `include_dead`) or out of
        scope; return those deleted."""
        params = {"ids": ids, "include_dead": include_dead, **scope.params}
        return await self._rows("admin_delete_jobs", params, ChangedJob, prepare=False)

    async def _dead_jobs(self, name: str, params: dict[str, Any]) -> DeadJobs:
        row = await self._row(name, params, DeadJobs, prepare=False)
        if row is None:  # an aggregate without GROUP BY always returns one row
            raise RuntimeError(f"{name} returned no row")
        return row

    async def preview_dead(
        self,
        *,
        queue: str | None,
        task: str | None,
        ids: list[UUID] | None,
        sample: int,
        scope: Scope,
    ) -> DeadJobs:
        """The dead jobs a replay or purge with these filters would touch (changes nothing)."""
        params = {"queue": queue, "task": task, "ids": ids, "sample": sample, **scope.params}
        return await self._dead_jobs("admin_dead_preview", params)

    async def retry_dead(
        self,
        *,
        queue: str | None,
        task: str | None,
        ids: list[UUID] | None,
        sample: int,
        message: str,
        scope: Scope,
    ) -> DeadJobs:
        """Replay the matching dead jobs as new attempts (each exactly once under races)."""
        params = {
            "queue": queue,
            "task": task,
            "ids": ids,
            "sample": sample,
            "message": message,
            **scope.params,
        }
        return await self._dead_jobs("admin_retry_dead", params)

    async def purge_dead(self, *, queue: str | None, sample: int, scope: Scope) -> DeadJobs:
        """Delete the dead jobs of `queue` (or of every queue) in scope."""
        params = {"queue": queue, "sample": sample, **scope.params}
        return await self._dead_jobs("admin_purge_dead", params)

    async def cancel_for_operator(self, job_id: UUID, reason: str) -> None:
        """The client's `cancel_job` statement, run in the action's transaction (the caller
        has locked the row and decided what the outcome means)."""
        await self._execute("cancel_job", {"id": job_id, "reason": reason})

    async def pause_queue(self, queue: str) -> int:
        """Mark the queue paused and take its dispatched jobs back; return how many."""
        return max(await self._execute("admin_pause_queue", {"queue": queue}), 0)

    async def resume_queue(self, queue: str, channel: str) -> None:
        """Let the queue run again; the notification on `channel` (sent on commit) wakes
        the queuer."""
        await self._execute("admin_resume_queue", {"queue": queue, "channel": channel})

    async def record_audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        detail: dict[str, Any],
        result: str,
        *,
        tenants: list[str | None] | None,
        queues: list[str] | None,
    ) -> None:
        """One audit_log row (in the caller's transaction, beside the change it records),
        with the tenants and queues it touched (see admin_audit_log)."""
        await self._execute(
            "admin_insert_audit",
            {
                "actor": actor,
                "action": action,
                "target": target,
                "detail": Jsonb(detail),
                "result": result,
                "tenants": tenants,
                "queues": queues,
            },
        )
