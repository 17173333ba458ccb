"""A batch as callers see it (docs/batches.md): its counts, its state, its callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the API and `conveyor admin batch --json`."""
        return {
            "id": str(self.id),
            "description": self.description,
            "state": self.state,
            "created": self.created.isoformat(),
            "sealed": self.sealed.isoformat() if self.sealed else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "total": self.total,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "on_complete_task": self.on_complete_task,
            "on_success_task": self.on_success_task,
            "complete_job_id": str(self.complete_job_id) if self.complete_job_id else None,
            "success_job_id": str(self.success_job_id) if self.success_job_id else None,
        }


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "task": self.task,
            "queue": self.queue_name,
            "status": self.status,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "last_error": self.last_error,
            "updated": self.updated.isoformat(),
        }
