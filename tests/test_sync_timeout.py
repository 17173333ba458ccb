"""A sync handler cannot be stopped at its timeout, so its attempt keeps the job (slot and
lease) until the thread returns: two runs of one job never overlap."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from conveyor import JobContext, RetryPolicy
from conveyor.app import Conveyor
from tests.conftest import Running, wait_until


async def test_a_timed_out_sync_handler_keeps_its_job_until_its_thread_returns(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    events: list[tuple[int, str]] = []
    lock = threading.Lock()

    # A lease shorter than the overrun: only the heartbeat keeps the rescuer away.
    @app.task(
        name="overrun",
        queue="work",
        max_attempts=2,
        timeout=0.3,
        lease=1.0,
        retry=RetryPolicy(base=0.01, cap=0.01, jitter=False),
    )
    def overrun(payload: Any, ctx: JobContext) -> None:
        with lock:
            events.append((ctx.attempt, "start"))
        try:
            if ctx.attempt == 1:
                time.sleep(2.5)
        finally:
            with lock:
                events.append((ctx.attempt, "end"))

    job_id = app.enqueue(overrun, {})
    running.queuer()
    workers = [running.worker(["work"], concurrency=2) for _ in range(2)]
    await wait_until(lambda: app.get_job(job_id).status == "completed", message="completion")
    assert events == [(1, "start"), (1, "end"), (2, "start"), (2, "end")]
    logs = db.execute(
        b"SELECT attempt_number, status, log_message FROM job_logs ORDER BY attempt_number"
    ).fetchall()
    assert logs == [
        (1, "failed", "TaskTimeout: task timed out after 0.3 s"),
        (2, "completed", None),
    ]
    assert sum(worker.counts["overran"] for worker in workers) == 1


async def test_an_overrunning_sync_handler_cancelled_meanwhile_ends_cancelled(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="stubborn", queue="work", max_attempts=3, timeout=0.2)
    def stubborn(payload: Any, ctx: JobContext) -> None:
        deadline = time.monotonic() + 30
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)

    job_id = app.enqueue(stubborn, {})
    running.queuer()
    worker = running.worker(["work"])
    await wait_until(lambda: worker.counts["overran"] == 1, message="the overrun")
    assert app.cancel(job_id) == "requested"
    await wait_until(lambda: app.get_job(job_id).status == "cancelled", message="cancelled")
    logs = db.execute(b"SELECT attempt_number, status FROM job_logs").fetchall()
    assert logs == [(1, "cancelled")]
