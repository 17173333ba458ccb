"""Batches for the dashboard, the API and the CLI: the newest batches with their progress,
and one batch with its jobs (docs/batches.md).

A batch may hold jobs of several tenants and queues, and its counts sum them all: a scoped
caller (tenants or queues) is refused, as for the metrics history.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from conveyor.admin.base import AdminBase, check_count
from conveyor.admin.errors import AdminError, AdminForbidden, AdminNotFound
from conveyor.admin.models import Model
from conveyor.batch_info import BatchInfo, BatchJob
from conveyor.ids import parse_job_id

DEFAULT_BATCHES = 50
DEFAULT_BATCH_JOBS = 200


@dataclass(frozen=True, kw_only=True)
class BatchSummary(Model):
    id: UUID
    description: str | None
    state: str  # open, running, succeeded, failed (conveyor.vocabulary.BATCH_STATES)
    created: datetime
    sealed: datetime | None
    finished: datetime | None
    total: int
    pending: int
    succeeded: int
    failed: int
    on_complete_task: str | None
    on_success_task: str | None
    complete_job_id: UUID | None
    success_job_id: UUID | None

    @classmethod
    def from_info(cls, info: BatchInfo) -> BatchSummary:
        return cls(state=info.state, **dataclasses.asdict(info))

    def percent(self, count: int) -> float:
        """`count` as a share of the batch, for progress bars."""
        return round(100.0 * count / self.total, 1) if self.total else 0.0


@dataclass(frozen=True, kw_only=True)
class BatchJobSummary(Model):
    id: UUID
    task: str
    queue: str
    status: str
    attempt: int
    max_attempts: int
    last_error: str | None
    updated: datetime

    @classmethod
    def from_row(cls, row: BatchJob) -> BatchJobSummary:
        return cls(
            id=row.id,
            task=row.task,
            queue=row.queue_name,
            status=row.status,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            last_error=row.last_error,
            updated=row.updated,
        )


@dataclass(frozen=True, kw_only=True)
class BatchDetail(Model):
    batch: BatchSummary
    jobs: list[BatchJobSummary]  # by id (enqueue order to the millisecond), at most `jobs_limit`
    jobs_truncated: bool  # the batch has more jobs than listed


def check_batch_id(value: object) -> UUID:
    try:
        return parse_job_id(value)
    except ValueError:
        raise AdminError(f"{value!r} is not a batch id (expected a UUID)") from None


class BatchesMixin(AdminBase):
    async def batches(
        self, limit: int = DEFAULT_BATCHES, *, unfinished: bool = False
    ) -> list[BatchSummary]:
        """The newest batches first; `unfinished`: only those whose callbacks are still
        to come."""
        count = check_count(limit, "limit")
        if not isinstance(unfinished, bool):
            raise AdminError("unfinished must be true or false")
        self._refuse_scoped()
        rows = await self.read(self.store.list_batches(count, unfinished=unfinished))
        return [BatchSummary.from_info(row) for row in rows]

    async def batch(self, batch_id: object, jobs_limit: int = DEFAULT_BATCH_JOBS) -> BatchDetail:
        """One batch, its counts and its first `jobs_limit` jobs."""
        identifier = check_batch_id(batch_id)
        count = check_count(jobs_limit, "jobs_limit")
        self._refuse_scoped()
        async with self.session() as store:
            info = await store.get_batch(identifier)
            if info is None:
                raise AdminNotFound(f"no batch with id {identifier}")
            jobs = await store.batch_jobs(identifier, count + 1)
        return BatchDetail(
            batch=BatchSummary.from_info(info),
            jobs=[BatchJobSummary.from_row(row) for row in jobs[:count]],
            jobs_truncated=len(jobs) > count,
        )

    def _refuse_scoped(self) -> None:
        if not self.scope.unrestricted:
            raise AdminForbidden(
                "a batch counts jobs of every tenant and queue it holds; a scoped "
                "credential may not read batches"
            )
