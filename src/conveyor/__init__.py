"""Conveyor: a durable job queue. PostgreSQL keeps every job; Redis hands them out."""

from conveyor.app import Conveyor
from conveyor.dedup import Debounce, EnqueueResult, Throttle, Unique
from conveyor.errors import (
    ConveyorError,
    DatabaseUnavailable,
    EnqueueError,
    JobCancelled,
    JobNotFound,
    PayloadError,
    PayloadTooLargeError,
    TaskTimeout,
    UnknownTaskError,
)
from conveyor.jobs import Job
from conveyor.outcomes import Cancel, Discard, Retry, Snooze
from conveyor.retry import RetryPolicy
from conveyor.tasks import JobContext, Task

__all__ = [
    "Cancel",
    "Conveyor",
    "ConveyorError",
    "DatabaseUnavailable",
    "Debounce",
    "Discard",
    "EnqueueError",
    "EnqueueResult",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobNotFound",
    "PayloadError",
    "PayloadTooLargeError",
    "Retry",
    "RetryPolicy",
    "Snooze",
    "Task",
    "TaskTimeout",
    "Throttle",
    "Unique",
    "UnknownTaskError",
]
