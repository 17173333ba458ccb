"""Middleware: hooks around enqueue and each attempt, and events once an outcome is
committed. Real PostgreSQL and Redis, the in-process worker (`running`) and a worker
process importing an app that has middleware."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
import sentry_sdk
from prometheus_client import REGISTRY
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from conveyor import Discard, EnqueueError, JobContext, RetryPolicy, Snooze, Unique
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.contrib.logging import LoggingMiddleware
from conveyor.contrib.sentry import SentryMiddleware
from conveyor.errors import EnqueueAborted, PayloadError
from conveyor.middleware import EnqueueCall, Hooks, Middleware
from conveyor.vocabulary import (
    COMPLETED,
    DEAD,
    LOG_COMPLETED,
    LOG_DEAD,
    LOG_FAILED,
    QUEUED,
    RETRY_SCHEDULED,
)
from tests.conftest import Running, wait_until
from tests.processes import ROOT, Processes, env_for

FAST = RetryPolicy(base=0.05, cap=0.1)


class Recorder(Middleware):
    """Records every hook call as (name, hook, detail) in a list shared by several."""

    def __init__(self, name: str, calls: list[tuple[str, str, Any]]) -> None:
        self.name = name
        self.calls = calls

    def _add(self, hook: str, detail: Any = None) -> None:
        self.calls.append((self.name, hook, detail))

    def before_enqueue(self, call: EnqueueCall) -> None:
        self._add("before_enqueue", list(call.payloads))

    def after_enqueue(self, call: EnqueueCall, job_ids: Sequence[UUID]) -> None:
        self._add("after_enqueue", list(job_ids))

    def on_enqueue_error(self, call: EnqueueCall, error: Exception) -> None:
        self._add("on_enqueue_error", type(error).__name__)

    def before_attempt(self, job: JobContext) -> None:
        self._add("before_attempt", (job.job_id, job.attempt))

    def after_attempt(self, job: JobContext, result: Any) -> None:
        self._add("after_attempt", (job.job_id, result))

    def on_attempt_error(self, job: JobContext, error: BaseException) -> None:
        self._add("on_attempt_error", (job.job_id, type(error).__name__))

    def on_complete(self, job: JobContext, result: Any) -> None:
        self._add("on_complete", (job.job_id, job.attempt, result))

    def on_retry(self, job: JobContext, error: BaseException, retry_in: timedelta) -> None:
        assert retry_in > timedelta(0)
        self._add("on_retry", (job.job_id, job.attempt, str(error)))

    def on_dead(self, job: JobContext, error: BaseException) -> None:
        self._add("on_dead", (job.job_id, job.attempt, str(error)))


class Raising(Middleware):
    """Raises in every hook named in `hooks`."""

    def __init__(self, *hooks: str) -> None:
        self.hooks = set(hooks)

    def _maybe(self, hook: str) -> None:
        if hook in self.hooks:
            raise RuntimeError(f"{hook} is broken")

    def before_enqueue(self, call: EnqueueCall) -> None:
        self._maybe("before_enqueue")

    def after_enqueue(self, call: EnqueueCall, job_ids: Sequence[UUID]) -> None:
        self._maybe("after_enqueue")

    def on_enqueue_error(self, call: EnqueueCall, error: Exception) -> None:
        self._maybe("on_enqueue_error")

    def before_attempt(self, job: JobContext) -> None:
        self._maybe("before_attempt")

    def after_attempt(self, job: JobContext, result: Any) -> None:
        self._maybe("after_attempt")

    def on_attempt_error(self, job: JobContext, error: BaseException) -> None:
        self._maybe("on_attempt_error")

    def on_complete(self, job: JobContext, result: Any) -> None:
        self._maybe("on_complete")

    def on_retry(self, job: JobContext, error: BaseException, retry_in: timedelta) -> None:
        self._maybe("on_retry")

    def on_dead(self, job: JobContext, error: BaseException) -> None:
        self._maybe("on_dead")


def hook_errors(hook: str) -> float:
    return REGISTRY.get_sample_value("hook_errors_total", {"hook": hook}) or 0.0


def job_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs").fetchone()
    assert row is not None
    return int(row[0])


def attempts_logged(db: psycopg.Connection[Any], job_id: UUID) -> list[str]:
    rows = db.execute(
        b"SELECT status FROM job_logs WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    return [row[0] for row in rows]


async def ended(app: Conveyor, job_id: UUID, status: str) -> None:
    await wait_until(lambda: app.get_job(job_id).status == status, timeout=30, message=status)


def hooks_of(calls: list[tuple[str, str, Any]], *names: str) -> list[tuple[str, str]]:
    return [(name, hook) for name, hook, _ in calls if hook in names]


# -- registration --------------------------------------------------------------------------


def test_middleware_must_be_a_middleware(app: Conveyor) -> None:
    with pytest.raises(TypeError, match=r"Middleware subclass, not object"):
        app.add_middleware(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Middleware subclass, not function"):
        Conveyor(app.settings, middleware=[lambda call: None])  # type: ignore[list-item]
    assert app.middleware == () and app.hooks is None


def test_only_overridden_hooks_are_called() -> None:
    class EnqueueOnly(Middleware):
        def after_enqueue(self, call: EnqueueCall, job_ids: Sequence[UUID]) -> None:
            pass

    hooks = Hooks([EnqueueOnly(), Middleware()])
    assert len(hooks.enqueuing) == 1
    assert hooks.attempting == () and hooks.listening == ()


# -- enqueue -------------------------------------------------------------------------------


async def test_enqueue_hooks_nest_in_registration_order(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("outer", calls))
    app.add_middleware(Recorder("inner", calls))

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    job_id = app.enqueue(noop, {"n": 1})
    assert hooks_of(calls, "before_enqueue", "after_enqueue") == [
        ("outer", "before_enqueue"),
        ("inner", "before_enqueue"),
        ("inner", "after_enqueue"),
        ("outer", "after_enqueue"),
    ]
    assert calls[0][2] == [{"n": 1}] and calls[-1][2] == [job_id]

    calls.clear()
    many = app.enqueue_many("noop", ({"n": n} for n in range(3)))  # a generator, read once
    assert calls[0][2] == [{"n": 0}, {"n": 1}, {"n": 2}] and calls[-1][2] == many
    assert job_count(db) == 4

    calls.clear()
    async_id = await app.aenqueue("noop", {"n": 5})
    assert [hook for _, hook, _ in calls] == ["before_enqueue"] * 2 + ["after_enqueue"] * 2
    assert calls[-1][2] == [async_id]

    # The forms that say what happened run the hooks once, too.
    calls.clear()
    first = app.enqueue_result("noop", {"n": 6}, dedup=Unique(key="six"))
    again = await app.aenqueue_result("noop", {"n": 6}, dedup=Unique(key="six"))
    assert again.job_id == first.job_id
    assert [detail for _, hook, detail in calls if hook == "after_enqueue"] == [
        [first.job_id],
        [first.job_id],
        [first.job_id],
        [first.job_id],
    ]
    await app.aclose()


async def test_a_raising_before_enqueue_aborts_and_writes_nothing(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("outer", calls))
    app.add_middleware(Raising("before_enqueue"))
    app.add_middleware(Recorder("never", calls))

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    before = hook_errors("before_enqueue")
    with pytest.raises(EnqueueAborted, match=r"enqueue of noop aborted by middleware Raising") as e:
        app.enqueue(noop, {})
    assert isinstance(e.value, EnqueueError)
    assert str(e.value.__cause__) == "before_enqueue is broken"
    with pytest.raises(EnqueueAborted):
        await app.aenqueue_many(noop, [{}, {}])
    with pytest.raises(EnqueueAborted):
        app.enqueue_result(noop, {}, dedup=Unique(key="k"))
    assert job_count(db) == 0
    assert hook_errors("before_enqueue") == before + 3
    # The middleware outside the refusing one learns of the error; the one inside never ran.
    assert [(name, hook) for name, hook, _ in calls] == [
        ("outer", "before_enqueue"),
        ("outer", "on_enqueue_error"),
    ] * 3
    await app.aclose()


async def test_batch_jobs_pass_the_enqueue_hooks(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("watch", calls))

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    with app.batch() as batch:
        first = batch.enqueue(noop, {"n": 1})
    async with app.abatch() as abatch:
        second = await abatch.enqueue_many(noop, [{"n": 2}])
    assert (
        hooks_of(calls, "before_enqueue", "after_enqueue")
        == [
            ("watch", "before_enqueue"),
            ("watch", "after_enqueue"),
        ]
        * 2
    )
    assert [detail for _, hook, detail in calls if hook == "after_enqueue"] == [[first], second]
    assert job_count(db) == 2
    await app.aclose()


async def test_each_workflow_step_passes_the_enqueue_hooks(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("watch", calls))

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    chord = app.chord([noop.s({"n": 1}), noop.s({"n": 2})], noop.s({"n": 3}))
    chain = await app.achain(noop.s({"n": 4}), noop.s({"n": 5}))
    befores = [detail for _, hook, detail in calls if hook == "before_enqueue"]
    afters = [detail for _, hook, detail in calls if hook == "after_enqueue"]
    assert befores == [[{"n": n}] for n in range(1, 6)]
    assert afters == [[job] for job in [*chord.header, chord.callback, *chain.ids]]
    app.add_middleware(Raising("before_enqueue"))
    with pytest.raises(EnqueueAborted):
        app.chain(noop.s({"n": 6}), noop.s({"n": 7}))
    assert job_count(db) == 5, "an aborted workflow writes none of its jobs"
    await app.aclose()


def test_a_failed_enqueue_reaches_on_enqueue_error_and_the_caller_unchanged(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("watcher", calls))
    app.add_middleware(Raising("on_enqueue_error"))

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    before = hook_errors("on_enqueue_error")
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        app.enqueue(noop, {"when": object()})
    assert calls[-1][1:] == ("on_enqueue_error", "PayloadError")
    assert hook_errors("on_enqueue_error") == before + 1
    assert job_count(db) == 0


def test_a_raising_after_enqueue_keeps_the_jobs(
    app: Conveyor, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    app.add_middleware(Raising("after_enqueue"))

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    before = hook_errors("after_enqueue")
    with caplog.at_level(logging.ERROR, logger="conveyor.middleware"):
        job_id = app.enqueue(noop, {})
    assert app.get_job(job_id).status == QUEUED
    assert job_count(db) == 1
    assert hook_errors("after_enqueue") == before + 1
    assert "middleware Raising raised in after_enqueue" in caplog.text
    assert "after_enqueue is broken" in caplog.text  # the traceback is logged


def test_after_enqueue_in_a_transaction_runs_before_its_commit(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    seen: list[tuple[bool, list[UUID]]] = []

    class Watcher(Middleware):
        def after_enqueue(self, call: EnqueueCall, job_ids: Sequence[UUID]) -> None:
            seen.append((call.in_transaction, list(job_ids)))

    app.add_middleware(Watcher())

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        pass

    with psycopg.connect(app.settings.database.url) as conn:
        rolled_back = app.enqueue(noop, {}, connection=conn)
        conn.rollback()
    committed = app.enqueue(noop, {})
    # The hook saw both; only the committed one exists: a transactional enqueue's
    # after_enqueue runs before the caller decides.
    assert seen == [(True, [rolled_back]), (False, [committed])]
    assert job_count(db) == 1


# -- attempts and events -------------------------------------------------------------------

_request_id: ContextVar[str] = ContextVar("request_id", default="none")


class RequestId(Middleware):
    """Sets a context variable for the attempt, as a tracing or scope middleware would."""

    def before_attempt(self, job: JobContext) -> None:
        _request_id.set(f"req-{job.job_id}")


async def test_attempt_hooks_nest_around_sync_and_async_handlers(
    app: Conveyor, running: Running
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("outer", calls))
    app.add_middleware(RequestId())
    app.add_middleware(Recorder("inner", calls))
    seen: dict[UUID, tuple[str, str]] = {}

    @app.task(name="sync_task", queue="work")
    def sync_task(payload: Any, ctx: JobContext) -> int:
        seen[ctx.job_id] = (_request_id.get(), threading.current_thread().name)
        return 1

    @app.task(name="async_task", queue="work")
    async def async_task(payload: Any, ctx: JobContext) -> int:
        seen[ctx.job_id] = (_request_id.get(), threading.current_thread().name)
        return 2

    sync_id, async_id = app.enqueue(sync_task), app.enqueue(async_task)
    running.queuer()
    running.worker(["work"])
    for job_id in (sync_id, async_id):
        await ended(app, job_id, COMPLETED)
    await wait_until(lambda: len(hooks_of(calls, "on_complete")) == 4, message="events")

    for job_id, result in ((sync_id, 1), (async_id, 2)):
        mine = [
            (name, hook)
            for name, hook, detail in calls
            if not hook.endswith("enqueue") and detail[0] == job_id
        ]
        assert mine == [
            ("outer", "before_attempt"),
            ("inner", "before_attempt"),
            ("inner", "after_attempt"),
            ("outer", "after_attempt"),
            ("outer", "on_complete"),
            ("inner", "on_complete"),
        ]
        assert ("outer", "on_complete", (job_id, 1, result)) in calls
        # What before_attempt set reaches the handler, in its thread for a sync one.
        assert seen[job_id][0] == f"req-{job_id}"
    assert seen[sync_id][1].startswith("conveyor-job")


async def test_events_fire_once_per_committed_outcome(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("events", calls))
    statuses: dict[UUID, list[str]] = {}

    class ReadsTheRow(Middleware):
        """Each event sees its outcome already in PostgreSQL."""

        def _check(self, job: JobContext) -> None:
            statuses.setdefault(job.job_id, []).append(attempts_logged(db, job.job_id)[-1])

        def on_complete(self, job: JobContext, result: Any) -> None:
            self._check(job)

        def on_retry(self, job: JobContext, error: BaseException, retry_in: timedelta) -> None:
            self._check(job)

        def on_dead(self, job: JobContext, error: BaseException) -> None:
            self._check(job)

    app.add_middleware(ReadsTheRow())

    @app.task(name="flaky", queue="work", max_attempts=3, retry=FAST)
    def flaky(payload: dict[str, int], ctx: JobContext) -> str:
        if ctx.attempt <= payload["failures"]:
            raise ValueError(f"failure {ctx.attempt}")
        return "done"

    @app.task(name="discards", queue="work")
    def discards(payload: Any) -> None:
        raise Discard("not worth it")

    @app.task(name="snoozes", queue="work", max_attempts=1)
    def snoozes(payload: Any, ctx: JobContext) -> None:
        if ctx.attempt == 1 and not calls_for(calls, ctx.job_id, "on_attempt_error"):
            raise Snooze(0.05)

    recovers = app.enqueue(flaky, {"failures": 2})
    dies = app.enqueue(flaky, {"failures": 3})
    discarded = app.enqueue(discards)
    snoozed = app.enqueue(snoozes)
    running.queuer()
    running.worker(["work"])
    await ended(app, recovers, COMPLETED)
    await ended(app, snoozed, COMPLETED)
    for job_id in (dies, discarded):
        await ended(app, job_id, DEAD)
    await wait_until(
        lambda: sum(len(seen) for seen in statuses.values()) == 8, message="eight events"
    )

    def events(job_id: UUID) -> list[tuple[str, Any]]:
        return [
            (hook, detail[1:])
            for _, hook, detail in calls
            if hook.startswith("on_") and hook != "on_attempt_error" and detail[0] == job_id
        ]

    assert events(recovers) == [
        ("on_retry", (1, "failure 1")),
        ("on_retry", (2, "failure 2")),
        ("on_complete", (3, "done")),
    ]
    assert events(dies) == [
        ("on_retry", (1, "failure 1")),
        ("on_retry", (2, "failure 2")),
        ("on_dead", (3, "failure 3")),
    ]
    assert events(discarded) == [("on_dead", (1, "not worth it"))]
    # A snooze is neither a retry nor an end: only its completion fires.
    assert events(snoozed) == [("on_complete", (1, None))]
    assert calls_for(calls, snoozed, "on_attempt_error") == [(snoozed, "Snooze")]
    # One event per attempt row, each fired once its row was there.
    assert statuses[recovers] == [LOG_FAILED, LOG_FAILED, LOG_COMPLETED]
    assert statuses[dies] == [LOG_FAILED, LOG_FAILED, LOG_DEAD]
    assert attempts_logged(db, recovers) == statuses[recovers]


def calls_for(calls: list[tuple[str, str, Any]], job_id: UUID, hook: str) -> list[Any]:
    return [detail for _, name, detail in calls if name == hook and detail[0] == job_id]


async def test_a_raising_before_attempt_fails_that_attempt_like_a_handler_error(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    calls: list[tuple[str, str, Any]] = []
    ran: list[int] = []
    app.add_middleware(Recorder("outer", calls))

    class RefusesFirstAttempt(Middleware):
        def before_attempt(self, job: JobContext) -> None:
            if job.attempt == 1:
                raise PermissionError("not on the first attempt")

    app.add_middleware(RefusesFirstAttempt())

    @app.task(name="counted", queue="work", max_attempts=2, retry=FAST)
    def counted(payload: Any, ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    before = hook_errors("before_attempt")
    job_id = app.enqueue(counted)
    running.queuer()
    running.worker(["work"])
    await ended(app, job_id, COMPLETED)
    assert ran == [2], "the handler did not run on the refused attempt"
    assert attempts_logged(db, job_id) == [LOG_FAILED, LOG_COMPLETED]
    row = db.execute(
        b"SELECT log_message FROM job_logs WHERE job_id = %s ORDER BY id LIMIT 1", (job_id,)
    ).fetchone()
    assert row is not None and row[0] == "PermissionError: not on the first attempt"
    assert hook_errors("before_attempt") == before + 1
    assert calls_for(calls, job_id, "on_attempt_error") == [(job_id, "PermissionError")]


async def test_failing_hooks_never_lose_a_job(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    """Every hook but before_attempt raises, every time: the jobs still end as their
    handlers say, the worker keeps working, and each hook error is counted."""
    calls: list[tuple[str, str, Any]] = []
    broken = ("after_attempt", "on_attempt_error", "on_complete", "on_retry", "on_dead")
    app.add_middleware(Raising(*broken))
    app.add_middleware(Recorder("after the broken one", calls))

    @app.task(name="fine", queue="work")
    def fine(payload: Any) -> str:
        return "ok"

    @app.task(name="doomed", queue="work", max_attempts=2, retry=FAST)
    async def doomed(payload: Any) -> None:
        raise RuntimeError("doomed")

    before = {hook: hook_errors(hook) for hook in broken}
    done = app.enqueue_many(fine, [{}] * 3)
    dead = app.enqueue(doomed)
    running.queuer()
    running.worker(["work"], concurrency=2)
    for job_id in done:
        await ended(app, job_id, COMPLETED)
    await ended(app, dead, DEAD)
    # The worker goes on: a job enqueued afterwards runs too.
    later = app.enqueue(fine)
    await ended(app, later, COMPLETED)
    await wait_until(lambda: len(hooks_of(calls, "on_complete")) == 4, message="events")
    assert app.get_job(later).result == "ok"
    assert attempts_logged(db, dead) == [LOG_FAILED, LOG_DEAD]
    # The other middleware still got every event.
    assert len(hooks_of(calls, "on_retry")) == 1 and len(hooks_of(calls, "on_dead")) == 1
    errors = {hook: hook_errors(hook) - before[hook] for hook in broken}
    assert errors == {
        "after_attempt": 4,
        "on_attempt_error": 2,
        "on_complete": 4,
        "on_retry": 1,
        "on_dead": 1,
    }


# -- shipped middleware --------------------------------------------------------------------


class RecordingTransport(Transport):
    """Keeps the events Sentry would send, in memory: no network."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                self.events.append(item.payload.json)


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    transport = RecordingTransport()
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


async def test_sentry_gets_dead_jobs_with_their_tags(
    app: Conveyor, running: Running, sentry_events: list[dict[str, Any]]
) -> None:
    app.add_middleware(SentryMiddleware())

    @app.task(name="charge", queue="billing", max_attempts=2, retry=FAST)
    def charge(payload: Any) -> None:
        raise ConnectionError("card processor unreachable")

    @app.task(name="fine", queue="billing")
    def fine(payload: Any) -> None:
        pass

    job_id = app.enqueue(charge)
    completed = app.enqueue(fine)
    running.queuer()
    running.worker(["billing"])
    await ended(app, job_id, DEAD)
    await ended(app, completed, COMPLETED)
    await wait_until(lambda: sentry_events, message="a Sentry event")
    [event] = sentry_events  # the dead job only: not its retried attempt, not the other job
    assert event["level"] == "error"
    assert event["tags"] == {
        "conveyor.queue": "billing",
        "conveyor.task": "charge",
        "conveyor.job_id": str(job_id),
        "conveyor.attempt": "2",
    }
    assert event["contexts"]["conveyor"] == {"attempt": 2, "max_attempts": 2, "status": DEAD}
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ConnectionError"
    assert exception["value"] == "card processor unreachable"
    frames = exception["stacktrace"]["frames"]
    assert frames and frames[-1]["function"] == "charge", "the handler's own traceback"


async def test_sentry_can_report_every_failed_attempt(
    app: Conveyor, running: Running, sentry_events: list[dict[str, Any]]
) -> None:
    app.add_middleware(SentryMiddleware(every_attempt=True))

    @app.task(name="flaky", queue="work", max_attempts=3, retry=FAST)
    async def flaky(payload: Any, ctx: JobContext) -> None:
        if ctx.attempt < 3:
            raise TimeoutError(f"attempt {ctx.attempt}")

    job_id = app.enqueue(flaky)
    running.queuer()
    running.worker(["work"])
    await ended(app, job_id, COMPLETED)
    await wait_until(lambda: len(sentry_events) == 2, message="two Sentry events")
    assert [event["level"] for event in sentry_events] == ["warning", "warning"]
    assert [event["tags"]["conveyor.attempt"] for event in sentry_events] == ["1", "2"]
    assert {event["contexts"]["conveyor"]["status"] for event in sentry_events} == {RETRY_SCHEDULED}


async def test_logging_middleware_logs_enqueue_and_each_attempt_with_the_job(
    app: Conveyor, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    app.add_middleware(LoggingMiddleware())

    @app.task(name="greet", queue="work", max_attempts=2, retry=FAST)
    def greet(payload: Any, ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise ValueError("not yet")

    with caplog.at_level(logging.INFO, logger="conveyor.jobs"):
        job_id = app.enqueue(greet)
        running.queuer()
        running.worker(["work"])
        await ended(app, job_id, COMPLETED)
        await wait_until(
            lambda: any(r.message == f"job {job_id} completed" for r in caplog.records),
            message="the completed line",
        )
    lines = [record for record in caplog.records if record.name == "conveyor.jobs"]
    messages = [record.getMessage() for record in lines]
    assert messages[0] == f"enqueued job {job_id}"
    assert f"job {job_id} started, attempt 1 of 2" in messages
    assert any(m.startswith(f"job {job_id} raised ValueError after ") for m in messages)
    assert any(m.startswith(f"job {job_id} will run again in ") for m in messages)
    assert f"job {job_id} started, attempt 2 of 2" in messages
    assert any(m.startswith(f"job {job_id} returned after ") for m in messages)
    for record in lines:
        assert (record.job_id, record.queue, record.task) == (job_id, "work", "greet")
    attempts = [getattr(record, "attempt", None) for record in lines]
    assert attempts[0] is None and set(attempts[1:]) == {1, 2}


# -- a worker process ----------------------------------------------------------------------


async def test_a_worker_process_runs_the_middleware_of_the_app_it_imports(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    from tests.apps import hooked

    app.tasks.update(hooked.app.tasks)
    job_id = app.enqueue("hooked.greet", {"name": "Ada"})
    procs.queuer()
    procs.conveyor(
        "worker",
        "--app",
        "tests.apps.hooked:app",
        "--queues",
        "hooked",
        "--concurrency",
        "2",
        name="worker",
        LOG__FORMAT="json",
    )
    await ended(app, job_id, COMPLETED)

    def lines() -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in procs.logs().splitlines() if line.startswith("{")]

    def about_job() -> list[dict[str, Any]]:
        return [line for line in lines() if line.get("job_id") == str(job_id)]

    await wait_until(
        lambda: any(line["message"] == f"job {job_id} completed" for line in about_job()),
        message="the completed line",
    )
    # The app's own middleware refused the first attempt; the second ran the handler.
    assert attempts_logged(db, job_id) == [LOG_FAILED, LOG_COMPLETED]
    assert app.get_job(job_id).result == "hello Ada"
    mine = [line for line in about_job() if line["logger"] == "conveyor.jobs"]
    messages = [line["message"] for line in mine]
    assert f"job {job_id} started, attempt 2 of 2" in messages
    assert any(m.startswith(f"job {job_id} raised PermissionError") for m in messages)
    started = [line for line in mine if line["message"].endswith("attempt 2 of 2")]
    assert started[0]["task"] == "hooked.greet" and started[0]["worker"]


GUIDE = ROOT / "docs" / "middleware.md"


async def test_the_guide_example_runs(settings: Settings, procs: Processes, tmp_path: Path) -> None:
    """docs/middleware.md's shop.py, as its readers run it: a queuer, a worker importing
    it, and the script itself."""
    text = GUIDE.read_text()
    example = text.split("`shop.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shop.py").write_text(example)
    # Beside, not instead of, the path that finds this checkout's conveyor.
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    procs.queuer()
    procs.conveyor(
        "worker",
        "--app",
        "shop:app",
        "--queues",
        "orders",
        name="worker",
        PYTHONPATH=path,
    )
    script = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(tmp_path / "shop.py")],
        cwd=ROOT,
        env=env_for(settings, PYTHONPATH=path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.splitlines() == [
        "shipped order 42",
        "enqueue of ship aborted by middleware NoJobsForBannedTenants: "
        "tenant acme-trial may not enqueue",
    ]
    assert "queued 1 ship job(s)" in script.stderr
    await wait_until(lambda: "done: 'shipped order 42'" in procs.logs(), message="the audit line")
