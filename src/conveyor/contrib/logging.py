"""Structured log lines for enqueue and for each attempt (docs/middleware.md).

Every line about a job carries its fields (`job_id`, `queue`, `task`, `attempt`, and in
the worker `worker`) as `conveyor.log_context` puts them on records: the JSON log format
prints them as keys, the text format as `[job=... queue=...]`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import timedelta
from typing import Any
from uuid import UUID

from conveyor.errors import first_line
from conveyor.human import span
from conveyor.log_context import job_fields
from conveyor.middleware import EnqueueCall, Middleware
from conveyor.outcomes import HandlerOutcome
from conveyor.tasks import JobContext

# When the current attempt started: each attempt runs in its own context, so concurrent
# attempts each read their own.
_started: ContextVar[float] = ContextVar("conveyor_attempt_started")


class LoggingMiddleware(Middleware):
    """Logs each enqueue, each attempt's start and end, and each committed outcome on
    `logger` (default `conveyor.jobs`): routine lines at `level` (INFO), failed attempts
    and retries at WARNING, dead jobs at ERROR."""

    def __init__(self, logger: str | logging.Logger = "conveyor.jobs", level: int = logging.INFO):
        self.log = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def after_enqueue(self, call: EnqueueCall, job_ids: Sequence[UUID]) -> None:
        if len(job_ids) == 1:
            fields = job_fields(job_ids[0], call.queue, call.task.name)
            self.log.log(self.level, "enqueued job %s", job_ids[0], extra=fields)
        else:
            fields = {"queue": call.queue, "task": call.task.name}
            self.log.log(self.level, "enqueued %d jobs", len(job_ids), extra=fields)

    def on_enqueue_error(self, call: EnqueueCall, error: Exception) -> None:
        fields = {"queue": call.queue, "task": call.task.name}
        self.log.warning("enqueue failed: %s", first_line(error), extra=fields)

    def before_attempt(self, job: JobContext) -> None:
        _started.set(time.perf_counter())
        self.log.log(
            self.level,
            "job %s started, attempt %d of %d",
            job.job_id,
            job.attempt,
            job.max_attempts,
            extra=_fields(job),
        )

    def after_attempt(self, job: JobContext, result: Any) -> None:
        took = span(_elapsed())
        self.log.log(self.level, "job %s returned after %s", job.job_id, took, extra=_fields(job))

    def on_attempt_error(self, job: JobContext, error: BaseException) -> None:
        level = self.level if isinstance(error, HandlerOutcome) else logging.WARNING
        self.log.log(
            level,
            "job %s raised %s after %s: %s",
            job.job_id,
            type(error).__name__,
            span(_elapsed()),
            first_line(error),
            extra=_fields(job),
        )

    def on_complete(self, job: JobContext, result: Any) -> None:
        self.log.log(self.level, "job %s completed", job.job_id, extra=_fields(job))

    def on_retry(self, job: JobContext, error: BaseException, retry_in: timedelta) -> None:
        self.log.warning(
            "job %s will run again in %s: %s",
            job.job_id,
            span(retry_in.total_seconds()),
            first_line(error),
            extra=_fields(job),
        )

    def on_dead(self, job: JobContext, error: BaseException) -> None:
        self.log.error("job %s is dead: %s", job.job_id, first_line(error), extra=_fields(job))


def _fields(job: JobContext) -> dict[str, Any]:
    return job_fields(job.job_id, job.queue, job.task, job.attempt)


def _elapsed() -> float:
    started = _started.get(None)
    return 0.0 if started is None else time.perf_counter() - started
