"""The whole system as separate processes: queuers, a supervised multi-process worker."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, children_of, finished, queue_check, ran_each_once

pytestmark = pytest.mark.fault


async def test_two_queuers_three_worker_processes_run_each_job_once(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    ids: list[Any] = []
    for start in range(0, 10_000, 2_000):
        ids += app.enqueue_many("job", [{"n": n} for n in range(start, start + 2_000)])
    procs.queuer()
    procs.queuer()
    procs.worker(processes=3, concurrency=20)
    await wait_until(lambda: finished(db, 10_000), timeout=240, interval=0.5, message="10,000 jobs")
    ran_each_once(db, ids)
    logs = db.execute(b"SELECT count(*), count(DISTINCT job_id) FROM job_logs").fetchone()
    assert logs == (10_000, 10_000)
    pids = db.execute(b"SELECT count(DISTINCT pid) FROM executions").fetchone()
    assert pids is not None and pids[0] == 3, "all three worker processes took part"


async def test_sigterm_drains_in_flight_jobs(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    ids = app.enqueue_many("job", [{"sleep": 1.5}] * 4)
    procs.queuer()
    worker = procs.worker(processes=1, concurrency=4)
    await wait_until(
        lambda: db.execute(b"SELECT count(*) FROM executions").fetchone() == (4,),
        message="all four jobs to start",
    )
    worker.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(worker.wait, 30)
    assert exit_code == 0
    statuses = db.execute(b"SELECT status, attempt FROM jobs").fetchall()
    assert statuses == [("completed", 1)] * 4, "in-flight jobs finished during the drain"
    assert queue_check(db, ids) == {"completed": 4}


async def test_jobs_longer_than_the_grace_period_are_handed_back(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    (job_id,) = app.enqueue_many("job", [{"sleep": 30}])
    procs.queuer()
    worker = procs.worker(processes=1, concurrency=1, WORKER__SHUTDOWN_GRACE="1s")
    await wait_until(lambda: app.get_job(job_id).status == "running", message="job start")
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 30) == 0
    job = app.get_job(job_id)
    # Handed back (the queuer, still running, may already have dispatched it again).
    assert job.status in ("queued", "dispatched") and job.attempt == 0
    log = db.execute(b"SELECT status FROM job_logs WHERE job_id = %s", (job_id,)).fetchall()
    assert log == [("handed_back",)]


async def test_supervisor_restarts_a_killed_worker_process(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    supervisor = procs.worker(processes=2, concurrency=2)
    await wait_until(lambda: len(children_of(supervisor.pid)) == 2, message="two children")
    victim = children_of(supervisor.pid)[0]
    import os

    os.kill(victim, signal.SIGKILL)
    await wait_until(
        lambda: len(children_of(supervisor.pid)) == 2 and victim not in children_of(supervisor.pid),
        message="a replacement child",
    )
    procs.queuer()
    ids = app.enqueue_many("job", [{"n": 1}] * 20)
    await wait_until(lambda: finished(db, 20), message="jobs after the restart")
    assert queue_check(db, ids) == {"completed": 20}
