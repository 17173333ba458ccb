"""Task declarations: what a job runs, where it queues and how it retries.

A handler takes the JSON payload, and optionally a `JobContext` as second argument. If the
payload parameter is annotated with a pydantic model, payloads are validated against it
at enqueue (a clear error naming the field) and handed to the handler as that model.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from uuid import UUID

import orjson
import pydantic

from conveyor.errors import JobCancelled, PayloadError, PayloadTooLargeError
from conveyor.limits import Limit, check_concurrency, parse_rate, scope
from conveyor.retry import RetryPolicy
from conveyor.vocabulary import MAX_PRIORITY, MIN_PRIORITY, SCOPE_TASK

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(?::[A-Za-z0-9_.\-]+)*$")
RESERVED_SUFFIXES = (":high", ":low")


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.match(name) or len(name) > 100:
        raise ValueError(
            f"queue name {name!r} must be 1-100 letters, digits, '_', '.', '-', "
            "in parts separated by single ':'"
        )
    if name.endswith(RESERVED_SUFFIXES):
        raise ValueError(f"queue name {name!r} must not end in ':high' or ':low' (lane names)")
    return name


def check_priority(priority: int) -> int:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ValueError(
            f"priority must be an integer from {MIN_PRIORITY} (most urgent) to {MAX_PRIORITY},"
            f" not {priority!r}"
        )
    return priority


MAX_PROGRESS_MESSAGE = 500


@dataclass(frozen=True)
class ProgressReport:
    """The latest `set_progress` of an attempt; `version` counts the calls, so the worker
    can tell a report it has not written yet from one it has."""

    fraction: float
    message: str | None
    version: int


def check_progress(fraction: object, message: object) -> tuple[float, str | None]:
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not 0.0 <= fraction <= 1.0  # NaN fails this too
    ):
        raise ValueError(f"progress must be a number from 0.0 to 1.0, not {fraction!r}")
    if message is not None and (
        not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE or "\x00" in message
    ):
        raise ValueError(
            f"a progress message must be text of at most {MAX_PROGRESS_MESSAGE} characters "
            "without NUL characters"
        )
    return float(fraction), message


@dataclass
class JobContext:
    """What a running handler may know about its job."""

    job_id: UUID
    task: str
    queue: str
    attempt: int
    max_attempts: int
    # The results of the jobs this one depended on, in depends_on order (a parent that did
    # not complete gives None), and their ids; empty without depends_on (docs/workflows.md).
    parent_results: list[Any] = field(default_factory=list)
    parent_ids: list[UUID] = field(default_factory=list)
    # A plain flag: set by the event loop, read by handler threads (atomic under the GIL);
    # a threading.Event per job cost more than the no-op jobs it serves.
    _cancelled: bool = field(default=False, repr=False)
    # Replaced whole (one assignment, atomic under the GIL) by handler threads, read by the
    # worker's heartbeat; `_progress_written` is the version the worker last wrote.
    _progress: ProgressReport | None = field(default=None, repr=False)
    _progress_written: int = field(default=0, repr=False)

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the attempt got (0.0 to 1.0) and, if you like, what it is doing.
        Cheap enough to call in a tight loop: the value is kept in memory, and the worker's
        next heartbeat (or the attempt's outcome) writes the latest one; no call waits
        for PostgreSQL. A bad value raises ValueError."""
        fraction, message = check_progress(fraction, message)
        version = self._progress.version + 1 if self._progress is not None else 1
        self._progress = ProgressReport(fraction, message, version)

    @property
    def progress(self) -> ProgressReport | None:
        return self._progress

    def unwritten_progress(self) -> ProgressReport | None:
        """The latest report if the worker has not written it yet."""
        report = self._progress
        if report is None or report.version <= self._progress_written:
            return None
        return report

    def progress_written(self, report: ProgressReport) -> None:
        self._progress_written = max(self._progress_written, report.version)

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def idempotency_key(self) -> str:
        """The job id, stable across attempts: use it to make side effects happen once."""
        return str(self.job_id)

    @property
    def parent_result(self) -> Any:
        """The one parent's result: a chain's previous step."""
        if len(self.parent_results) != 1:
            raise LookupError(
                f"job {self.job_id} has {len(self.parent_results)} parents, not one: "
                "read ctx.parent_results"
            )
        return self.parent_results[0]

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled")


@dataclass
class Task:
    name: str
    func: Callable[..., Any]
    queue: str
    priority: int = 100
    max_attempts: int = 3
    timeout: float | None = None
    lease: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Snoozes that give their attempt back; later ones use an attempt (conveyor.outcomes).
    max_snoozes: int = 100
    # Every job of the task expires this long after enqueue unless the enqueue says otherwise.
    expires_in: float | None = None
    schema: type[pydantic.BaseModel] | None = None
    wants_context: bool = False
    is_async: bool = False
    enqueue_hook: Callable[..., Any] | None = field(default=None, repr=False)
    # Global limits across every worker, written to flow_limits as scope "task:<name>".
    rate_limit: str | None = None
    concurrency_limit: int | None = None

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        try:
            if self.rate_limit is not None:
                parse_rate(self.rate_limit)
            if self.concurrency_limit is not None:
                check_concurrency(self.concurrency_limit)
        except ValueError as error:
            raise ValueError(f"task {self.name}: {error}") from None
        check_priority(self.priority)
        if self.max_attempts < 1:
            raise ValueError(f"task {self.name}: max_attempts must be at least 1")
        if (
            isinstance(self.max_snoozes, bool)
            or not isinstance(self.max_snoozes, int)
            or (self.max_snoozes < 0)
        ):
            raise ValueError(f"task {self.name}: max_snoozes must be a non-negative integer")
        if self.expires_in is not None and (
            isinstance(self.expires_in, bool) or not self.expires_in > 0
        ):
            raise ValueError(f"task {self.name}: expires_in must be a positive number of seconds")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"task {self.name}: timeout must be positive")
        self.is_async = inspect.iscoroutinefunction(self.func)
        params = list(inspect.signature(self.func).parameters.values())
        self.wants_context = len(params) >= 2
        if self.schema is None and params:
            annotation = _resolved_annotation(self.func, params[0].name)
            if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
                self.schema = annotation

    @property
    def limit(self) -> Limit | None:
        """The task's global limit, if it declares one."""
        if self.rate_limit is None and self.concurrency_limit is None:
            return None
        rate = parse_rate(self.rate_limit) if self.rate_limit is not None else None
        return Limit(scope(SCOPE_TASK, self.name), rate, self.concurrency_limit)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def enqueue(self, payload: Any = None, **options: Any) -> UUID:
        """Shortcut for `app.enqueue(task, payload, ...)`."""
        if self.enqueue_hook is None:
            raise RuntimeError(f"task {self.name} is not registered with a Conveyor app")
        result: UUID = self.enqueue_hook(self, payload, **options)
        return result

    def s(self, payload: Any = None, **options: Any) -> Signature:
        """This task with a payload and enqueue options, not enqueued yet: a step of
        `app.chain`, `app.group` or `app.chord` (docs/workflows.md)."""
        return Signature(self, payload, options)

    def encode_payload(
        self, payload: Any, limit: int, transform: Callable[[Any], Any] | None = None
    ) -> str:
        """Validate and serialise a payload; raise PayloadError naming what is wrong.
        `transform` (field encryption) runs after validation, before the size check."""
        if self.schema is not None:
            payload = _validate(self.schema, payload, self.name)
        elif isinstance(payload, pydantic.BaseModel):
            payload = payload.model_dump(mode="json")
        if transform is not None:
            try:
                payload = transform(payload)
            except TypeError as error:
                raise PayloadError(
                    f"payload for task {self.name} is not JSON-serialisable: {error}"
                ) from None
        try:
            encoded = orjson.dumps(payload)
        except TypeError as error:
            raise PayloadError(
                f"payload for task {self.name} is not JSON-serialisable: {error}"
            ) from None
        if len(encoded) > limit:
            raise PayloadTooLargeError(len(encoded), limit)
        return encoded.decode()

    def decode_payload(self, payload: Any) -> Any:
        """Turn a stored payload into the handler's argument; PayloadError if it no longer fits."""
        if self.schema is None:
            return payload
        try:
            return self.schema.model_validate(payload)
        except pydantic.ValidationError as error:
            raise PayloadError(
                f"invalid payload for task {self.name}: {_first_error(error)}",
                field=_first_field(error),
            ) from None


@dataclass(frozen=True)
class Signature:
    """A job to enqueue as part of a workflow: its task, payload and enqueue options (the
    keywords of `app.enqueue`; checked when the workflow is enqueued)."""

    task: Task
    payload: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)


# The tasks a worker can run, by name: the ones registered on the user's app at import.
TaskRegistry: TypeAlias = Mapping[str, Task]


def _resolved_annotation(func: Callable[..., Any], name: str) -> Any:
    try:
        hints = inspect.get_annotations(func, eval_str=True)
    except Exception:  # noqa: BLE001 - unresolvable hints simply mean "no schema"
        return None
    return hints.get(name)


def _validate(schema: type[pydantic.BaseModel], payload: Any, task: str) -> Any:
    try:
        model = payload if isinstance(payload, schema) else schema.model_validate(payload)
    except pydantic.ValidationError as error:
        raise PayloadError(
            f"invalid payload for task {task}: {_first_error(error)}", field=_first_field(error)
        ) from None
    return model.model_dump(mode="json")


def _first_field(error: pydantic.ValidationError) -> str | None:
    details = error.errors()
    if not details:
        return None
    return ".".join(str(part) for part in details[0]["loc"]) or None


def _first_error(error: pydantic.ValidationError) -> str:
    parts = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"]) or "payload"
        parts.append(f"field {where!r}: {detail['msg']}")
    return "; ".join(parts)
