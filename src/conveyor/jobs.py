"""The job as callers see it, and the status vocabulary shared by every surface."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from conveyor.vocabulary import (
    CANCELLED,
    COMPLETED,
    DEAD,
    DISPATCHED,
    QUEUED,
    RETRY_SCHEDULED,
    RUNNING,
    STATUSES,
    TERMINAL,
)

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "DEAD",
    "DISPATCHED",
    "QUEUED",
    "RETRY_SCHEDULED",
    "RUNNING",
    "STATUSES",
    "TERMINAL",
    "Job",
]


@dataclass(frozen=True)
class Job:
    id: UUID
    queue_name: str
    task: str
    status: str
    priority: int
    payload: Any
    attempt: int
    max_attempts: int
    run_at: datetime
    dispatched_at: datetime | None
    started: datetime | None
    completed: datetime | None
    failed: datetime | None
    worker_id: str | None
    last_error: str | None
    idempotency_key: str | None
    cancel_requested: bool
    created: datetime
    updated: datetime
    tenant: str | None = None  # who the job belongs to (scoped admin access)
    unique_key: str | None = None  # the dedup key it was enqueued with (conveyor.dedup)
    # What the handler returned (docs/results.md): None until it completed, and when it
    # returned None; `result_error` says why a completed job's return value was not kept.
    result: Any = None
    result_error: str | None = None
    # The handler's latest ctx.set_progress (0.0-1.0), its message and when it was written,
    # and the labels the job was enqueued with (docs/progress.md).
    progress: float | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None
    tags: list[str] | None = None
    meta: dict[str, Any] | None = None

    @property
    def display_status(self) -> str:
        if self.status == QUEUED and self.attempt > 0:
            return RETRY_SCHEDULED
        return self.status

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})
