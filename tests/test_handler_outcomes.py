"""What a handler may ask for: Snooze, Retry, Cancel, Discard (raised or returned), and a
retry policy whose backoff sees the exception. Real worker, times read from PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor import Cancel, Discard, Retry, RetryPolicy, Snooze
from conveyor.app import Conveyor
from tests.conftest import Running, wait_until


def attempts_logged(db: psycopg.Connection[Any], job_id: UUID) -> list[tuple[int, str]]:
    rows = db.execute(
        b"SELECT attempt_number, status FROM job_logs WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def run_at_after_log(db: psycopg.Connection[Any], job_id: UUID, log_status: str) -> float:
    """Seconds between the attempt's end (its job_logs row) and the run_at it set: both
    written by one statement, so PostgreSQL's now() is the same on both sides."""
    row = db.execute(
        b"SELECT extract(epoch FROM j.run_at - l.finished)::float8 FROM jobs j"
        b" JOIN job_logs l ON l.job_id = j.id WHERE j.id = %s AND l.status = %s"
        b" ORDER BY l.id DESC LIMIT 1",
        (job_id, log_status),
    ).fetchone()
    assert row is not None, f"no {log_status} row for {job_id}"
    return float(row[0])


async def ended(app: Conveyor, job_id: UUID, status: str) -> None:
    await wait_until(lambda: app.get_job(job_id).status == status, timeout=30, message=status)


def test_outcomes_refuse_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="Snooze seconds"):
        Snooze(-1)
    with pytest.raises(ValueError, match="Retry in_seconds"):
        Retry(float("nan"))
    with pytest.raises(ValueError, match="ten years"):
        Snooze(float("inf"))
    assert Snooze(timedelta(minutes=1)).seconds == 60.0


def test_backoff_sees_the_exception_when_it_asks_for_it() -> None:
    class Throttled(Exception):
        retry_after = 7.0

    with_error = RetryPolicy(backoff=lambda attempt, error: getattr(error, "retry_after", 1.0))
    assert with_error.delay(1, Throttled()) == 7.0
    assert with_error.delay(1, ValueError()) == 1.0
    plain = RetryPolicy(backoff=lambda attempt: attempt * 2.0)
    assert plain.delay(3, Throttled()) == 6.0
    # A wait read from a server may be anything: it is kept within what PostgreSQL stores.
    wild = RetryPolicy(backoff=lambda attempt, error: float(str(error)))
    assert wild.delay(1, ValueError("inf")) == 10 * 366 * 86400.0
    assert wild.delay(1, ValueError("nan")) == 0.0
    assert wild.delay(1, ValueError("-3")) == 0.0


def test_max_snoozes_must_be_a_non_negative_integer(app: Conveyor) -> None:
    with pytest.raises(ValueError, match="max_snoozes"):
        app.task(name="bad", max_snoozes=-1)(lambda payload: None)


async def test_snooze_gives_the_attempt_back_and_runs_later(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    calls: list[int] = []

    @app.task(name="rate_limited", queue="work", max_attempts=1)
    def rate_limited(payload: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Snooze(1.5, "429 Too Many Requests")

    job_id = app.enqueue(rate_limited, {})
    running.queuer()
    running.worker(["work"])
    await ended(app, job_id, "completed")
    # max_attempts=1 and it still completed: the snooze did not use the only attempt.
    assert attempts_logged(db, job_id) == [(1, "snoozed"), (1, "completed")]
    assert app.get_job(job_id).attempt == 1
    assert db.execute(b"SELECT snoozes FROM jobs WHERE id = %s", (job_id,)).fetchone() == (1,)
    assert run_at_after_log(db, job_id, "snoozed") == pytest.approx(1.5, abs=0.001)
    # The reason is in the attempt's row; the job has no error and no failure time.
    reason = db.execute(
        b"SELECT log_message, traceback FROM job_logs WHERE job_id = %s AND status = 'snoozed'",
        (job_id,),
    ).fetchone()
    assert reason == ("Snooze: 429 Too Many Requests", None)
    job = app.get_job(job_id)
    assert job.last_error is None and job.failed is None
    started_after = db.execute(
        b"SELECT extract(epoch FROM j.started - l.finished)::float8 FROM jobs j"
        b" JOIN job_logs l ON l.job_id = j.id AND l.status = 'snoozed' WHERE j.id = %s",
        (job_id,),
    ).fetchone()
    assert started_after is not None and started_after[0] >= 1.5


async def test_snoozes_past_max_snoozes_use_attempts(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="always_busy", queue="work", max_attempts=2, max_snoozes=2)
    async def always_busy(payload: Any) -> Snooze:
        return Snooze(0)

    job_id = app.enqueue(always_busy, {})
    running.queuer()
    running.worker(["work"])
    await ended(app, job_id, "dead")
    assert attempts_logged(db, job_id) == [
        (1, "snoozed"),
        (1, "snoozed"),
        (1, "failed"),
        (2, "dead"),
    ]
    job = app.get_job(job_id)
    assert job.attempt == 2 and "snoozed more than 2 times" in (job.last_error or "")


async def test_retry_fails_the_attempt_with_the_chosen_delay(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    calls: list[int] = []

    @app.task(name="webhook", queue="work", max_attempts=3)
    def webhook(payload: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Retry(2, "endpoint answered 503")

    @app.task(name="last_chance", queue="work", max_attempts=1)
    def last_chance(payload: Any) -> Retry:
        return Retry(0)

    job_id = app.enqueue(webhook, {})
    last_id = app.enqueue(last_chance, {})
    running.queuer()
    running.worker(["work"])
    await ended(app, job_id, "completed")
    await ended(app, last_id, "dead")
    assert attempts_logged(db, job_id) == [(1, "failed"), (2, "completed")]
    assert run_at_after_log(db, job_id, "failed") == pytest.approx(2.0, abs=0.001)
    assert app.get_job(job_id).last_error == "Retry: endpoint answered 503"
    # Retry uses an attempt: on the last one the job is dead.
    assert attempts_logged(db, last_id) == [(1, "dead")]


async def test_cancel_and_discard_end_the_job_now(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="unwanted", queue="work", max_attempts=5)
    def unwanted(payload: Any) -> Cancel:
        return Cancel("the order was withdrawn")

    @app.task(name="hopeless", queue="work", max_attempts=5)
    async def hopeless(payload: Any) -> None:
        raise Discard("mailbox does not exist")

    cancelled_id = app.enqueue(unwanted, {})
    discarded_id = app.enqueue(hopeless, {})
    running.queuer()
    running.worker(["work"])
    await ended(app, cancelled_id, "cancelled")
    await ended(app, discarded_id, "dead")
    assert attempts_logged(db, cancelled_id) == [(1, "cancelled")]
    assert attempts_logged(db, discarded_id) == [(1, "dead")]  # four attempts left unused
    assert app.get_job(discarded_id).last_error == "Discard: mailbox does not exist"
    messages = db.execute(
        b"SELECT log_message, traceback FROM job_logs WHERE job_id = %s", (cancelled_id,)
    ).fetchall()
    assert messages == [("Cancel: the order was withdrawn", None)]


async def test_backoff_function_receives_the_exception(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    class TooManyRequests(Exception):
        def __init__(self, retry_after: float) -> None:
            super().__init__(f"429, retry after {retry_after} s")
            self.retry_after = retry_after

    seen: list[BaseException] = []

    def from_header(attempt: int, error: BaseException) -> float:
        seen.append(error)
        return getattr(error, "retry_after", 60.0)

    calls: list[int] = []

    @app.task(name="provider", queue="work", retry=RetryPolicy(backoff=from_header))
    def provider(payload: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TooManyRequests(2.5)

    job_id = app.enqueue(provider, {})
    running.queuer()
    running.worker(["work"])
    await ended(app, job_id, "completed")
    assert len(seen) == 1 and isinstance(seen[0], TooManyRequests)
    assert run_at_after_log(db, job_id, "failed") == pytest.approx(2.5, abs=0.001)
