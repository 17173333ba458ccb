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
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from uuid import UUID

# The record attributes, in the order the text format prints them.
FIELDS = ("job_id", "queue", "task", "attempt", "worker")
TEXT_NAMES = {"job_id": "job"}  # the rest print under their own names

_current: ContextVar[Mapping[str, Any] | None] = ContextVar("conveyor_job", default=None)


def job_fields(
    job_id: UUID | str,
    queue: str | None = None,
    task: str | None = None,
    attempt: int | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    """The fields of one job, for `extra=` or `job_context`; unknown ones are left out.
    The id stays a UUID until a line is written (both formats print it as text)."""
    fields: dict[str, Any] = {"job_id": job_id}
    for name, value in (("queue", queue), ("task", task), ("attempt", attempt)):
        if value is not None:
            fields[name] = value
    if worker is not None:
        fields["worker"] = worker
    return fields


class JobLogContext:
    """Sets the job's fields for the `with` block (a class, not @contextmanager: it is
    entered once per attempt on the worker's hot path)."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _current.set(self._fields)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def job_context(fields: Mapping[str, Any]) -> JobLogContext:
    """Every record logged in this context (this task, and the threads it runs in a copy
    of its context) carries `fields` (not copied: do not change them meanwhile); the
    previous context comes back on exit."""
    return JobLogContext(fields)


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
