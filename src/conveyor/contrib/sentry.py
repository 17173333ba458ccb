"""Failed jobs reported to Sentry, tagged with the job (docs/middleware.md).

Needs the optional `sentry` extra (`pip install 'conveyor-queue[sentry]'`) and a client
the application initialises itself with `sentry_sdk.init(...)`, in the module the worker
imports (`conveyor worker --app module:app`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conveyor.middleware import Middleware
from conveyor.tasks import JobContext
from conveyor.vocabulary import DEAD, RETRY_SCHEDULED

try:
    import sentry_sdk
except ImportError as missing:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        "conveyor.contrib.sentry needs sentry-sdk: pip install 'conveyor-queue[sentry]'"
    ) from missing


class SentryMiddleware(Middleware):
    """Sends the exception of every dead job to Sentry, once, after its outcome is
    committed; with `every_attempt=True`, also each failed attempt that will retry (as a
    warning). Events carry the tags `conveyor.queue`, `conveyor.task`, `conveyor.job_id`
    and `conveyor.attempt`, and a `conveyor` context with the attempt count, the job's
    status as the dashboard shows it (dead, retry_scheduled) and, for a retry, its delay."""

    def __init__(self, *, every_attempt: bool = False) -> None:
        self.every_attempt = every_attempt

    def on_retry(self, job: JobContext, error: BaseException, retry_in: timedelta) -> None:
        if self.every_attempt:
            seconds = retry_in.total_seconds()
            capture(job, error, "warning", status=RETRY_SCHEDULED, retry_in=seconds)

    def on_dead(self, job: JobContext, error: BaseException) -> None:
        capture(job, error, "error", status=DEAD)


def capture(job: JobContext, error: BaseException, level: str, **details: Any) -> str | None:
    """Capture `error` with the job's tags on the current Sentry client; return the event
    id (None when Sentry is not initialised or dropped the event)."""
    tags = {
        "conveyor.queue": job.queue,
        "conveyor.task": job.task,
        "conveyor.job_id": str(job.job_id),
        "conveyor.attempt": str(job.attempt),
    }
    context = {"attempt": job.attempt, "max_attempts": job.max_attempts, **details}
    return sentry_sdk.capture_exception(
        error,
        tags=tags,
        contexts={"conveyor": context},
        level=level,
    )
