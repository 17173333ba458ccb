"""What operator actions change (admin_actions.sql): each method is one guarded statement,
meant to run on a store bound to the action's transaction (`store.transaction()`), together
with the locks that precede it and the audit row that records it.

Statements that take optional filters or id lists run with prepare=False, for the reason
given in `store.admin_reads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from conveyor.store.base import StoreBase


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


@dataclass(frozen=True)
class ChangedJob:
    """A job a bulk action changed, and its status before (for the audit row)."""

    id: UUID
    queue_name: str
    previous: str


class AdminWrites(StoreBase):
    async def lock_job(self, job_id: UUID) -> LockedJob | None:
        """The job's row, locked until the transaction ends (None: no such job)."""
        return await self._row("admin_lock_job", {"id": job_id}, LockedJob, prepare=False)

    async def lock_queue(self, queue: str) -> LockedQueue | None:
        """The queue's job_queues row, locked (None: the queue has no row yet)."""
        return await self._row("admin_lock_queue", {"queue": queue}, LockedQueue, prepare=False)

    async def retry_jobs(self, ids: list[UUID], message: str) -> list[ChangedJob]:
        """Queue these jobs to run again now, attempts reset; return those that qualified
        (dead, cancelled, completed, or waiting out a retry backoff)."""
        params = {"ids": ids, "message": message}
        return await self._rows("admin_retry_jobs", params, ChangedJob, prepare=False)

    async def delete_jobs(self, ids: list[UUID], *, include_dead: bool) -> list[ChangedJob]:
        """Delete these jobs unless running (or dead, without `include_dead`); return
        those deleted."""
        params = {"ids": ids, "include_dead": include_dead}
        return await self._rows("admin_delete_jobs", params, ChangedJob, prepare=False)

    async def _dead_jobs(self, name: str, params: dict[str, Any]) -> DeadJobs:
        row = await self._row(name, params, DeadJobs, prepare=False)
        if row is None:  # an aggregate without GROUP BY always returns one row
            raise RuntimeError(f"{name} returned no row")
        return row

    async def preview_dead(
        self, *, queue: str | None, task: str | None, ids: list[UUID] | None, sample: int
    ) -> DeadJobs:
        """The dead jobs a replay or purge with these filters would touch (changes nothing)."""
        params = {"queue": queue, "task": task, "ids": ids, "sample": sample}
        return await self._dead_jobs("admin_dead_preview", params)

    async def retry_dead(
        self,
        *,
        queue: str | None,
        task: str | None,
        ids: list[UUID] | None,
        sample: int,
        message: str,
    ) -> DeadJobs:
        """Replay the matching dead jobs as new attempts (each exactly once under races)."""
        params = {"queue": queue, "task": task, "ids": ids, "sample": sample, "message": message}
        return await self._dead_jobs("admin_retry_dead", params)

    async def purge_dead(self, *, queue: str | None, sample: int) -> DeadJobs:
        """Delete the dead jobs of `queue` (or of every queue)."""
        return await self._dead_jobs("admin_purge_dead", {"queue": queue, "sample": sample})

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
        self, actor: str, action: str, target: str | None, detail: dict[str, Any], result: str
    ) -> None:
        """One audit_log row (in the caller's transaction, beside the change it records)."""
        await self._execute(
            "admin_insert_audit",
            {
                "actor": actor,
                "action": action,
                "target": target,
                "detail": Jsonb(detail),
                "result": result,
            },
        )
