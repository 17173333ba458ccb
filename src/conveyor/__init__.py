"""Conveyor: a durable job queue. PostgreSQL keeps every job; Redis hands them out."""

from conveyor.app import Conveyor
from conveyor.batch_info import BatchInfo
from conveyor.dedup import Debounce, EnqueueResult, Throttle, Unique
from conveyor.errors import (
    BatchClosed,
    BatchNotFound,
    ConveyorError,
    DatabaseUnavailable,
    EnqueueAborted,
    EnqueueError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobWaitTimeout,
    PayloadError,
    PayloadTooLargeError,
    ResultNotStored,
    TaskTimeout,
    UnknownTaskError,
)
from conveyor.jobs import Job
from conveyor.outcomes import Cancel, Discard, Retry, Snooze
from conveyor.retry import RetryPolicy
from conveyor.tasks import JobContext, Signature, Task
from conveyor.workflows import ChainHandle, ChordHandle, GroupHandle

__all__ = [
    "BatchClosed",
    "BatchInfo",
    "BatchNotFound",
    "Cancel",
    "ChainHandle",
    "ChordHandle",
    "Conveyor",
    "ConveyorError",
    "DatabaseUnavailable",
    "Debounce",
    "Discard",
    "EnqueueAborted",
    "EnqueueError",
    "EnqueueResult",
    "GroupHandle",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobWaitTimeout",
    "PayloadError",
    "PayloadTooLargeError",
    "ResultNotStored",
    "Retry",
    "RetryPolicy",
    "Signature",
    "Snooze",
    "Task",
    "TaskTimeout",
    "Throttle",
    "Unique",
    "UnknownTaskError",
]
