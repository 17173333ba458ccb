"""Retries with backoff, the dead-letter queue, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor import JobContext, RetryPolicy
from conveyor.app import Conveyor
from tests.conftest import Running, wait_until


@given(
    attempt=st.integers(min_value=1, max_value=80),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.01, max_value=600),
    jitter=st.booleans(),
)
def test_backoff_stays_within_its_bounds(
    attempt: int, base: float, cap: float, jitter: bool
) -> None:
    policy = RetryPolicy(base=base, cap=max(cap, base), jitter=jitter)
    low, high = policy.bounds(attempt)
    assert 0 <= low <= policy.delay(attempt) <= high <= max(cap, base)


def test_backoff_follows_the_specification_without_jitter() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 8, 9, 20)] == [2, 4, 8, 256, 300, 300]


async def test_failing_task_retries_with_backoff_then_dies(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    policy = RetryPolicy(base=0.2, cap=0.6, jitter=True)

    @app.task(name="flaky", queue="work", max_attempts=4, retry=policy)
    def flaky(payload: Any) -> None:
        raise ValueError("Division by zero in MRR calculation")

    job_id = app.enqueue(flaky, {})
    running.queuer()
    running.worker(["work"])
    await wait_until(lambda: app.get_job(job_id).status == "dead", timeout=30, message="dead")
    job = app.get_job(job_id)
    assert job.attempt == 4 and job.last_error == "ValueError: Division by zero in MRR calculation"
    logs = db.execute(
        b"SELECT attempt_number, status, log_message, traceback, started, finished "
        b"FROM job_logs ORDER BY attempt_number"
    ).fetchall()
    assert [(row[0], row[1]) for row in logs] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "dead"),
    ]
    for row in logs:
        assert row[2] == "ValueError: Division by zero in MRR calculation"
        assert "Traceback" in row[3] and "raise ValueError" in row[3]
    for previous, following in itertools.pairwise(logs):
        waited = (following[4] - previous[5]).total_seconds()
        low, _ = policy.bounds(previous[0])
        assert waited >= low, f"attempt {following[0]} started {waited:.3f}s after, before {low}"


async def test_exceptions_outside_retry_on_go_straight_to_the_dead_letter_queue(
    app: Conveyor, running: Running
) -> None:
    @app.task(
        name="strict",
        queue="work",
        max_attempts=5,
        retry=RetryPolicy(base=0.01, retry_on=(ConnectionError,)),
    )
    def strict(payload: Any) -> None:
        raise KeyError("missing")

    job_id = app.enqueue(strict, {})
    running.queuer()
    running.worker(["work"])
    await wait_until(lambda: app.get_job(job_id).status == "dead", message="dead")
    assert app.get_job(job_id).attempt == 1


async def test_timeout_is_enforced(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    @app.task(
        name="slow",
        queue="work",
        max_attempts=2,
        timeout=0.2,
        retry=RetryPolicy(base=0.01, cap=0.01),
    )
    async def slow(payload: Any) -> None:
        await asyncio.sleep(30)

    job_id = app.enqueue(slow, {})
    running.queuer()
    running.worker(["work"])
    await wait_until(lambda: app.get_job(job_id).status == "dead", message="dead by timeout")
    messages = db.execute(b"SELECT log_message FROM job_logs ORDER BY attempt_number").fetchall()
    assert messages == [("TaskTimeout: task timed out after 0.2 s",)] * 2


async def test_cancel_waiting_and_running_jobs(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    started = asyncio.Event()

    @app.task(name="long_async", queue="work")
    async def long_async(payload: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task(name="long_sync", queue="work")
    def long_sync(payload: Any, ctx: JobContext) -> None:
        deadline = time.monotonic() + 60
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)  # a cooperative handler checks ctx.cancelled

    waiting = app.enqueue(long_async, {}, delay=3600)
    assert app.cancel(waiting) == "cancelled"
    assert app.get_job(waiting).status == "cancelled"
    assert app.cancel(waiting) == "finished"

    async_job = app.enqueue(long_async, {})
    sync_job = app.enqueue(long_sync, {})
    running.queuer()
    running.worker(["work"])
    await wait_until(
        lambda: {app.get_job(j).status for j in (async_job, sync_job)} == {"running"},
        message="both running",
    )
    assert app.cancel(async_job) == "requested"
    assert app.cancel(sync_job) == "requested"
    await wait_until(
        lambda: {app.get_job(j).status for j in (async_job, sync_job)} == {"cancelled"},
        message="both cancelled",
    )
    statuses = db.execute(b"SELECT status FROM job_logs ORDER BY status").fetchall()
    assert statuses == [("cancelled",)] * 3


async def test_async_cancel(app: Conveyor) -> None:
    @app.task(name="later", queue="work")
    async def later(payload: Any) -> None:
        return None

    job_id = await app.aenqueue(later, {}, delay=3600)
    assert await app.acancel(job_id) == "cancelled"
    assert (await app.aget_job(job_id)).status == "cancelled"
    assert await app.acancel(job_id) == "finished"
    import uuid

    from conveyor import JobNotFound

    with pytest.raises(JobNotFound):
        await app.acancel(uuid.uuid4())
