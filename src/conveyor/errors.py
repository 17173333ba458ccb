"""Exceptions a caller of Conveyor can catch, each with a message that names the problem."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its class name when it has none."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def reason(error: BaseException) -> str:
    """What went wrong in the server's own words: Conveyor's errors wrap a driver error
    with a prefix of their own, so show the wrapped one."""
    cause = error.__cause__ if isinstance(error, ConveyorError) else None
    return first_line(cause or error)


class EnqueueError(ConveyorError, ValueError):
    """The job was refused before anything was written."""


class UnknownTaskError(EnqueueError):
    def __init__(self, name: str, known: list[str]) -> None:
        hint = ", ".join(sorted(known)[:10]) or "none registered"
        super().__init__(f"unknown task {name!r} (registered tasks: {hint})")
        self.name = name


class PayloadError(EnqueueError):
    """The payload cannot be stored: not JSON, failing the task's schema, or too large."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLargeError(PayloadError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class EnqueueAborted(EnqueueError):
    """A middleware's `before_enqueue` raised (its error is the `__cause__`); nothing
    was written."""


class DatabaseUnavailable(ConveyorError):
    """PostgreSQL did not answer (or cannot write now); nothing was committed. Transient:
    every loop backs off and tries again."""


class StatementTimeout(DatabaseUnavailable):
    """PostgreSQL stopped a statement that ran past its time limit."""


class StatementRejected(ConveyorError):
    """PostgreSQL refused a statement (a constraint, bad data): retrying the same
    statement will fail the same way."""


class SchemaNotMigrated(StatementRejected):
    """The schema is missing or older than this version of Conveyor."""


class RedisUnavailable(ConveyorError):
    """Redis did not answer. Transient: PostgreSQL holds every job, so nothing is lost."""


class JobNotFound(ConveyorError, LookupError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class BatchNotFound(ConveyorError, LookupError):
    def __init__(self, batch_id: object) -> None:
        super().__init__(f"no batch with id {batch_id}")
        self.batch_id = batch_id


class BatchClosed(EnqueueError):
    """A job was enqueued into a batch whose block has ended; nothing was written."""

    def __init__(self, batch_id: object) -> None:
        super().__init__(f"batch {batch_id} is closed: no job can join it any more")
        self.batch_id = batch_id


class JobCancelled(ConveyorError):
    """Raised inside a handler (by ctx.raise_if_cancelled) when an operator cancelled it."""


class TaskTimeout(ConveyorError, TimeoutError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"task timed out after {seconds:g} s")
        self.seconds = seconds


class ScratchRefused(ConveyorError):
    """`conveyor bench` or `conveyor demo` declined to drop a schema or wipe Redis keys it
    cannot prove are its own scratch data; nothing was changed."""


class JobWaitTimeout(ConveyorError, TimeoutError):
    """`app.wait` / `app.await_job` gave up; the job itself goes on."""

    def __init__(self, job_id: object, seconds: float | None) -> None:
        super().__init__(
            f"job {job_id} had not ended after {seconds or 0:g} s of waiting; it goes on "
            "(wait again, or cancel it)"
        )
        self.job_id = job_id
        self.seconds = seconds


class JobFailed(ConveyorError):
    """The awaited job ended without a result: `status` is dead, cancelled or expired, and
    `error` its last error (the final attempt's, the cancel's or the expiry's reason)."""

    def __init__(
        self, job_id: object, status: str, error: str | None, attempts: int, max_attempts: int
    ) -> None:
        super().__init__(
            f"job {job_id} ended {status} after {attempts} of {max_attempts} attempt(s): "
            f"{error or 'no error recorded'}"
        )
        self.job_id = job_id
        self.status = status
        self.error = error
        self.attempts = attempts
        self.max_attempts = max_attempts


class ResultNotStored(JobFailed):
    """The awaited job completed, but what its handler returned could not be kept (not
    JSON, or over jobs.max_result_bytes): `error` says which. Its work was done."""
