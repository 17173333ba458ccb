"""Middleware: the application's own code around enqueue and around each attempt, and
events once a worker has committed an attempt's outcome (docs/middleware.md).

One style for both sides: plain methods called before, after and on error, in the
caller's thread (enqueue) or on the worker's event loop (attempts, events), so one
middleware serves sync and async producers and sync and async handlers alike. `before_*`
hooks run in registration order, `after_*` and `on_*_error` in reverse (the first
middleware registered is the outermost), events in registration order.

A failing hook never loses a job. Only two hooks may stop what they surround: a raising
`before_enqueue` aborts that enqueue (`EnqueueAborted`, nothing written), and a raising
`before_attempt` fails that attempt as a handler error would (retried or dead by the
task's policy). Every other hook's exception is logged with the job id and counted in
`hook_errors_total{hook}`, and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

from conveyor import metrics
from conveyor import vocabulary as v
from conveyor.client import EnqueueOptions
from conveyor.errors import EnqueueAborted, first_line
from conveyor.log_context import job_fields
from conveyor.outcomes import HandlerOutcome
from conveyor.store.work import Outcome
from conveyor.tasks import JobContext, Task

log = logging.getLogger("conveyor.middleware")


@dataclass(frozen=True)
class EnqueueCall:
    """One enqueue call as middleware sees it: the task, the queue its jobs go to, the
    payloads as the caller gave them (read them; changing them changes nothing reliably),
    the options, and whether the jobs go into the caller's open transaction (then
    `after_enqueue` runs before that transaction commits, and it may still roll back)."""

    task: Task
    queue: str
    payloads: Sequence[Any]
    options: EnqueueOptions
    in_transaction: bool


class Middleware:
    """Override the hooks you need; here each does nothing. Only overridden hooks are
    called, so a middleware that watches enqueue costs the worker nothing.

    Attempt hooks and events run on the worker's event loop, between jobs: keep them
    quick (no blocking I/O), or hand the work to a thread or a queue of your own."""

    def before_enqueue(self, call: EnqueueCall) -> None:
        """Before anything is validated or written. Raising aborts the enqueue: the caller
        gets `EnqueueAborted` (an `EnqueueError`) with this error as its cause."""

    def after_enqueue(self, call: EnqueueCall, job_ids: Sequence[UUID]) -> None:
        """After the jobs are committed (or written into the caller's transaction), with
        their ids in payload order (an idempotent or deduplicated one may be an existing
        job's id)."""

    def on_enqueue_error(self, call: EnqueueCall, error: Exception) -> None:
        """The enqueue raised (a bad payload, PostgreSQL unavailable, or a later
        middleware's `before_enqueue`); the error then reaches the caller unchanged."""

    def before_attempt(self, job: JobContext) -> None:
        """Before the handler runs, in the attempt's context: log lines carry the job's
        fields, and context variables set here reach a sync handler's thread. Raising
        fails the attempt as a handler error would; raising `Snooze`, `Retry`, `Cancel`
        or `Discard` asks for that outcome instead."""

    def after_attempt(self, job: JobContext, result: Any) -> None:
        """The handler returned `result` (not yet committed: see `on_complete`)."""

    def on_attempt_error(self, job: JobContext, error: BaseException) -> None:
        """The handler (or a later middleware's `before_attempt`) raised `error`: an
        exception, a timeout (`TaskTimeout`), a `Snooze`/`Retry`/`Cancel`/`Discard`
        request, or `asyncio.CancelledError` when the worker hands the attempt back at
        shutdown. The attempt's outcome does not depend on this hook."""

    def on_complete(self, job: JobContext, result: Any) -> None:
        """The attempt's completion is committed; `result` is what the handler returned."""

    def on_retry(self, job: JobContext, error: BaseException, retry_in: timedelta) -> None:
        """The failed attempt is committed and the job runs again in about `retry_in`
        (PostgreSQL's clock decides when)."""

    def on_dead(self, job: JobContext, error: BaseException) -> None:
        """The job's last attempt failed (or it was discarded) and it is dead, committed."""


ENQUEUE_HOOKS = ("before_enqueue", "after_enqueue", "on_enqueue_error")
ATTEMPT_HOOKS = ("before_attempt", "after_attempt", "on_attempt_error")
EVENT_HOOKS = ("on_complete", "on_retry", "on_dead")


def _overrides(middleware: Middleware, hooks: Sequence[str]) -> bool:
    return any(getattr(type(middleware), hook) is not getattr(Middleware, hook) for hook in hooks)


def check_middleware(middleware: object) -> Middleware:
    if not isinstance(middleware, Middleware):
        raise TypeError(
            f"middleware must be an instance of a conveyor.middleware.Middleware subclass, "
            f"not {type(middleware).__name__}"
        )
    return middleware


def _report(hook: str, middleware: Middleware, job: JobContext | None = None) -> None:
    """Called from an `except` block: log the hook's exception (with its traceback) and
    count it."""
    metrics.HOOK_ERRORS.labels(hook).inc()
    name = type(middleware).__name__
    if job is None:
        log.exception("middleware %s raised in %s", name, hook)
        return
    fields = job_fields(job.job_id, job.queue, job.task, job.attempt)
    log.exception("middleware %s raised in %s for job %s", name, hook, job.job_id, extra=fields)


class Hooks:
    """An app's middleware, sorted by the hooks each overrides: the enqueue path, the
    attempt path and the outcome writer each check one tuple."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.middleware = tuple(check_middleware(m) for m in middleware)
        self.enqueuing = tuple(m for m in self.middleware if _overrides(m, ENQUEUE_HOOKS))
        self.attempting = tuple(m for m in self.middleware if _overrides(m, ATTEMPT_HOOKS))
        self.listening = tuple(m for m in self.middleware if _overrides(m, EVENT_HOOKS))

    # -- enqueue -------------------------------------------------------------------------

    def enqueue(
        self, task: Task, payloads: Sequence[Any], options: EnqueueOptions, in_transaction: bool
    ) -> EnqueueGuard | NoGuard:
        if not self.enqueuing:
            return NO_GUARD
        queue = options.queue or task.queue
        call = EnqueueCall(task, queue, payloads, options, in_transaction)
        return EnqueueGuard(self.enqueuing, call)

    # -- attempts ------------------------------------------------------------------------

    async def around_attempt(self, job: JobContext, invoke: Callable[[], Awaitable[Any]]) -> Any:
        """Run the handler through `invoke` between the attempt hooks; return its result or
        raise what it raised."""
        entered: list[Middleware] = []
        for middleware in self.attempting:
            try:
                middleware.before_attempt(job)
            except HandlerOutcome as request:
                _attempt_errored(entered, job, request)
                raise
            except Exception as error:
                _report("before_attempt", middleware, job)
                _attempt_errored(entered, job, error)
                raise
            entered.append(middleware)
        try:
            result = await invoke()
        except BaseException as error:
            _attempt_errored(entered, job, error)
            raise
        for middleware in reversed(entered):
            try:
                middleware.after_attempt(job, result)
            except Exception:  # noqa: BLE001 - reported; the handler's result stands
                _report("after_attempt", middleware, job)
        return result

    # -- events --------------------------------------------------------------------------

    def committed(self, outcomes: Sequence[Outcome]) -> None:
        """Fire the events of outcomes PostgreSQL has just committed."""
        for outcome in outcomes:
            claimed = outcome.claimed
            status = outcome.log_status
            if claimed is None or status not in (v.LOG_COMPLETED, v.LOG_FAILED, v.LOG_DEAD):
                continue
            job = JobContext(
                claimed.id, claimed.task, claimed.queue, claimed.attempt, claimed.max_attempts
            )
            for middleware in self.listening:
                _fire(middleware, job, outcome)


def _attempt_errored(entered: list[Middleware], job: JobContext, error: BaseException) -> None:
    for middleware in reversed(entered):
        try:
            middleware.on_attempt_error(job, error)
        except Exception:  # noqa: BLE001 - reported; the attempt's error stands
            _report("on_attempt_error", middleware, job)


def _fire(middleware: Middleware, job: JobContext, outcome: Outcome) -> None:
    status = outcome.log_status
    hook = "on_complete" if status == v.LOG_COMPLETED else "on_retry"
    try:
        if status == v.LOG_COMPLETED:
            middleware.on_complete(job, outcome.value)
        elif status == v.LOG_FAILED:
            middleware.on_retry(job, _error(outcome), timedelta(seconds=outcome.retry_in or 0.0))
        else:
            hook = "on_dead"
            middleware.on_dead(job, _error(outcome))
    except Exception:  # noqa: BLE001 - reported; the outcome is committed whatever happens
        _report(hook, middleware, job)


def _error(outcome: Outcome) -> BaseException:
    # Every failed or dead outcome the worker builds carries its exception; the text
    # stands in should one ever come without.
    return outcome.raised or RuntimeError(outcome.error or outcome.log_status)


class EnqueueGuard:
    """Runs the enqueue hooks around one enqueue call (a plain context manager, so the
    sync and the async enqueue share it)."""

    __slots__ = ("_entered", "_middleware", "call")

    def __init__(self, middleware: tuple[Middleware, ...], call: EnqueueCall) -> None:
        self._middleware = middleware
        self._entered: list[Middleware] = []
        self.call = call

    def __enter__(self) -> EnqueueGuard:
        for middleware in self._middleware:
            try:
                middleware.before_enqueue(self.call)
            except Exception as error:
                _report("before_enqueue", middleware)
                self._errored(error)
                raise EnqueueAborted(
                    f"enqueue of {self.call.task.name} aborted by middleware "
                    f"{type(middleware).__name__}: {first_line(error)}"
                ) from error
            self._entered.append(middleware)
        return self

    def finish(self, job_ids: list[UUID]) -> list[UUID]:
        for middleware in reversed(self._entered):
            try:
                middleware.after_enqueue(self.call, job_ids)
            except Exception:  # noqa: BLE001 - reported; the jobs are written, the ids stand
                _report("after_enqueue", middleware)
        return job_ids

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, Exception):
            self._errored(error)

    def _errored(self, error: Exception) -> None:
        for middleware in reversed(self._entered):
            try:
                middleware.on_enqueue_error(self.call, error)
            except Exception:  # noqa: BLE001 - reported; the enqueue's error stands
                _report("on_enqueue_error", middleware)


class NoGuard:
    """What an enqueue without enqueue middleware goes through: nothing."""

    __slots__ = ()

    def __enter__(self) -> NoGuard:
        return self

    def finish(self, job_ids: list[UUID]) -> list[UUID]:
        return job_ids

    def __exit__(self, *exc: object) -> None:
        return None


NO_GUARD = NoGuard()


def enqueue_guard(
    hooks: Hooks | None,
    task: Task,
    payloads: Sequence[Any],
    options: EnqueueOptions,
    in_transaction: bool,
) -> EnqueueGuard | NoGuard:
    if hooks is None:
        return NO_GUARD
    return hooks.enqueue(task, payloads, options, in_transaction)


__all__ = ["EnqueueCall", "Hooks", "Middleware", "enqueue_guard"]
