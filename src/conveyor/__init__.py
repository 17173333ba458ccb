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
from conveyor.retry import RetryPolicy
from conveyor.tasks import JobContext, Task

__all__ = [
    "Conveyor",
    "ConveyorError",
    "DatabaseUnavailable",
    "Debounce",
    "EnqueueError",
    "EnqueueResult",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobNotFound",
    "PayloadError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "Task",
    "TaskTimeout",
    "Throttle",
    "Unique",
    "UnknownTaskError",
]
