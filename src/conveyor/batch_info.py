"""A batch as callers see it (docs/batches.md): its counts, its state, its callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from conveyor.vocabulary import BATCH_FAILED, BATCH_OPEN, BATCH_RUNNING, BATCH_SUCCEEDED


@dataclass(frozen=True)
class BatchInfo:
    id: UUID
    description: str | None
    created: datetime
    sealed: datetime | None  # its block ended: no job joins any more
    finished: datetime | None  # every job ended; the callbacks were enqueued then
    total: int
    pending: int  # not ended yet (a job waiting for a retry is pending)
    succeeded: int  # completed
    failed: int  # dead, cancelled, expired, or deleted before it ended
    on_complete_task: str | None
    on_success_task: str | None
    complete_job_id: UUID | None  # the on_complete job, once enqueued
    success_job_id: UUID | None  # the on_success job, once enqueued (never if one failed)

    @property
    def state(self) -> str:
        if self.sealed is None:
            return BATCH_OPEN
        if self.finished is None:
            return BATCH_RUNNING
        return BATCH_FAILED if self.failed else BATCH_SUCCEEDED

    @property
    def done(self) -> int:
        """Jobs that ended, whichever way."""
        return self.succeeded + self.failed


@dataclass(frozen=True)
class BatchJob:
    """One job of a batch, as its page lists it."""

    id: UUID
    task: str
    queue_name: str
    status: str
    attempt: int
    max_attempts: int
    last_error: str | None
    updated: datetime
