"""Which job a log line is about, so an operator can find every line of one job.

The worker sets the job's context around each attempt (`job_context`); a filter on the
log handler (`JobContextFilter`, installed by `configure_logging`) copies it onto every
record logged meanwhile: Conveyor's own lines and the handler's own `logging` calls
alike. A context variable, not a global: each attempt runs in its own asyncio task (which
gets its own copy), and a sync handler's thread runs in a copy of that task's context, so
two jobs running at once never see each other's fields.

Lines about a job logged outside its attempt (a lease lost in the heartbeat, a stale
outcome) pass the same fields with `extra=job_fields(...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from uuid import UUID

# The record attributes, in the order the text format prints them.
FIELDS = ("job_id", "queue", "task", "attempt", "worker")
TEXT_NAMES = {"job_id": "job", "queue": "queue", "task": "task", "attempt": "attempt"}

_current: ContextVar[Mapping[str, Any] | None] = ContextVar("conveyor_job", default=None)


def job_fields(
    job_id: UUID | str,
    queue: str | None = None,
    task: str | None = None,
    attempt: int | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    """The fields of one job, for `extra=` or `job_context`; unknown ones are left out."""
    fields: dict[str, Any] = {"job_id": str(job_id)}
    for name, value in (("queue", queue), ("task", task), ("attempt", attempt)):
        if value is not None:
            fields[name] = value
    if worker is not None:
        fields["worker"] = worker
    return fields


@contextmanager
def job_context(fields: Mapping[str, Any]) -> Iterator[None]:
    """Every record logged in this context (this task, and the threads it runs in a copy
    of its context) carries `fields`; the previous context comes back on exit."""
    token = _current.set(dict(fields))
    try:
        yield
    finally:
        _current.reset(token)


def current_job() -> Mapping[str, Any] | None:
    return _current.get()


class JobContextFilter(logging.Filter):
    """Copies the current job's fields onto each record. Fields a caller passed with
    `extra=` win: they name the job the line is about."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _current.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The job fields a record carries (none for a line outside any job)."""
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


def text_suffix(record: logging.LogRecord) -> str:
    """` [job=... queue=... task=... attempt=2 worker=...]`, or "" outside a job."""
    fields = record_fields(record)
    if not fields:
        return ""
    parts = [f"{TEXT_NAMES.get(name, name)}={value}" for name, value in fields.items()]
    return " [" + " ".join(parts) + "]"
