"""The maintenance passes' statements: find and rescue lost attempts, heal lost
dispatches, prune old rows, measure the queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class LeasedJob:
    """A running attempt, named by its fencing token."""

    id: UUID
    lease_token: int


@dataclass(frozen=True)
class RescuedJob:
    id: UUID
    queue_name: str
    task: str
    status: str  # after the rescue: queued again, or dead on its last attempt
    attempt: int  # the attempt that was lost
    worker_id: str | None  # the worker that lost it


@dataclass(frozen=True)
class DispatchedId:
    id: UUID
    queue_name: str


@dataclass(frozen=True)
class ExpiredJob:
    id: UUID
    queue_name: str
    task: str


@dataclass(frozen=True)
class QueueDepth:
    queue_name: str
    lane: str
    waiting: int
    oldest_age: float | None


class UpkeepStatements(StoreBase):
    async def find_lost_jobs(self, dead_after: float, limit: int) -> list[LeasedJob]:
        """Running attempts whose lease ran out or whose worker is silent, stopped or
        unknown."""
        params = {"dead_after": dead_after, "limit": limit}
        return await self._rows("find_lost_jobs", params, LeasedJob)

    async def find_worker_jobs(self, worker_id: str) -> list[LeasedJob]:
        return await self._rows("find_worker_jobs", {"worker_id": worker_id}, LeasedJob)

    async def rescue_jobs(
        self, candidates: Sequence[LeasedJob], reason: str, stagger: float = 0.0
    ) -> list[RescuedJob]:
        """Give the attempts back, each guarded by its token; return those that changed.
        The n-th candidate runs again `(n - 1) * stagger` seconds from now."""
        if not candidates:
            return []
        params = {
            "ids": [job.id for job in candidates],
            "tokens": [job.lease_token for job in candidates],
            "reason": reason,
            "stagger": stagger,
        }
        return await self._rows("rescue_jobs", params, RescuedJob)

    async def dispatched_before(self, grace: float) -> list[DispatchedId]:
        """Jobs dispatched more than `grace` seconds ago and still not claimed."""
        return await self._rows("dispatched_before", {"grace": grace}, DispatchedId)

    async def prune_finished_jobs(self, retention: float, dead_retention: float, limit: int) -> int:
        params = {"retention": retention, "dead_retention": dead_retention, "limit": limit}
        return await self._execute("prune_finished_jobs", params)

    async def prune_job_logs(self, retention: float, limit: int) -> int:
        return await self._execute("prune_job_logs", {"retention": retention, "limit": limit})

    async def prune_workers(self, retention: float) -> int:
        return await self._execute("prune_workers", {"retention": retention})

    async def queue_depths(self) -> list[QueueDepth]:
        """Waiting jobs (ready, or buffered in Redis) per queue and lane, and the age of
        the oldest."""
        return await self._rows("queue_depths", {}, QueueDepth)

    async def expire_queued_jobs(self, limit: int) -> list[ExpiredJob]:
        """End up to `limit` queued jobs whose deadline has passed as expired (one
        statement, with their job_logs rows)."""
        return await self._rows("expire_queued_jobs", {"limit": limit}, ExpiredJob)
