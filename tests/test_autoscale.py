"""A real supervisor with `--autoscale 1:4`: grows under a backlog, drains it, shrinks back
after the cool-down, and loses, repeats or fails no job while draining processes."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, children_of, finished, ran_each_once

pytestmark = pytest.mark.fault

# Short windows through configuration: the rules are the product's, only the clock is faster.
# CPU and memory marks are put out of reach, so the shared test machine's load cannot
# scale anything: depth alone drives this test.
FAST_AUTOSCALE = {
    "AUTOSCALE__HIGH_WATER": "50",
    "AUTOSCALE__LOW_WATER": "5",
    "AUTOSCALE__CPU_HIGH": "1",
    "AUTOSCALE__CPU_LOW": "0.999",
    "AUTOSCALE__MEM_HIGH": "1",
    "AUTOSCALE__MEM_LOW": "0.999",
    "AUTOSCALE__CPU_WINDOW": "1s",
    "AUTOSCALE__CHECK_INTERVAL": "200ms",
    "AUTOSCALE__SCALE_UP_COOLDOWN": "300ms",
    "AUTOSCALE__SCALE_DOWN_COOLDOWN": "2s",
}


def autoscaled_worker(procs: Processes, bounds: str) -> subprocess.Popen[bytes]:
    return procs.conveyor(
        "worker",
        "--app",
        "tests.apps.recording:app",
        "--queues",
        "work",
        "--autoscale",
        bounds,
        "--concurrency",
        "2",
        name="worker",
        **FAST_AUTOSCALE,
    )


async def trickle(app: Conveyor, ids: list[Any]) -> None:
    """A light, steady load (under the low mark), so processes drain with jobs in flight."""
    while True:
        ids += app.enqueue_many("job", [{"sleep": 0.3}])
        await asyncio.sleep(0.1)


async def test_autoscale_grows_to_max_drains_and_shrinks_without_losing_a_job(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    ids = app.enqueue_many("job", [{"sleep": 0.1}] * 1500)
    procs.queuer()
    supervisor = autoscaled_worker(procs, "1:4")
    await wait_until(lambda: len(children_of(supervisor.pid)) >= 1, message="the first process")
    await wait_until(
        lambda: len(children_of(supervisor.pid)) == 4, timeout=60, message="four processes"
    )
    await wait_until(lambda: finished(db, 1500), timeout=240, interval=0.5, message="backlog")

    producer = asyncio.create_task(trickle(app, ids))
    try:
        await wait_until(
            lambda: len(children_of(supervisor.pid)) == 1,
            timeout=120,
            interval=0.2,
            message="back to one process",
        )
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
    total = len(ids)
    await wait_until(lambda: finished(db, total), timeout=60, message="every job")

    ran_each_once(db, ids)
    outcomes = db.execute(b"SELECT DISTINCT status FROM job_logs").fetchall()
    assert outcomes == [("completed",)], "no attempt failed, was lost or handed back"
    decisions = db.execute(
        b"SELECT result, detail->>'reason' FROM audit_log WHERE actor = 'autoscaler' ORDER BY id"
    ).fetchall()
    assert decisions[:3] == [("up", "depth")] * 3
    assert decisions[3:] == [("down", "idle")] * 3
