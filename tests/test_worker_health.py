"""Worker health: what each worker reports in its heartbeat (memory, attempts processed
and failed, run time, postgres-only mode, open breakers), from the RSS reader up to a
real worker process's row."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.human import byte_size, run_time, span
from conveyor.worker.breaker import Breakers
from conveyor.worker.health import WorkerHealth, resident_bytes
from conveyor.worker.outcome import CANCELLED, COMPLETED, DEAD, HANDED_BACK, RETRY, Outcome
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, finished, free_port

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_resident_memory_comes_from_proc(tmp_path: Path) -> None:
    now = resident_bytes()
    assert now is not None and now > 1 << 20, "a Python process holds more than 1 MiB"
    statm = tmp_path / "statm"
    statm.write_text("25000 1234 300 10 0 900 0\n")
    assert resident_bytes(statm) == 1234 * PAGE


def test_resident_memory_falls_back_to_getrusage(tmp_path: Path) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert resident_bytes(tmp_path / "missing") == peak
    garbled = tmp_path / "statm"
    garbled.write_text("not numbers")
    assert resident_bytes(garbled) == peak


def test_totals_count_attempts_that_ended() -> None:
    health = WorkerHealth()
    job = uuid4()
    for status, duration in (
        (COMPLETED, 0.5),
        (RETRY, 0.25),
        (DEAD, 0.125),
        (CANCELLED, 0.125),
        (HANDED_BACK, 9.0),  # shutdown: not an attempt of this worker's
    ):
        health.record(Outcome(job, 1, status, duration))
    vitals = health.vitals(postgres_only=True, breakers_open=["b", "a"])
    assert (vitals.jobs_processed, vitals.jobs_failed, vitals.busy_seconds) == (4, 2, 1.0)
    assert vitals.postgres_only and vitals.breakers_open == ["a", "b"]
    assert vitals.rss_bytes is not None and vitals.rss_bytes > 0


def test_open_breakers_are_those_open_now() -> None:
    now = [0.0]
    breakers = Breakers(True, 2, 30, clock=lambda: now[0])
    for _ in range(2):
        breakers.record("mail", failed=True)
    breakers.record("sms", failed=True)
    assert breakers.open_queues() == ["mail"]
    now[0] = 31.0  # the cooldown is over: half-open, serving again
    assert breakers.open_queues() == []
    assert Breakers(False, 1, 30).open_queues() == []


def test_human_formats() -> None:
    assert (span(3725), span(42), span(4.25)) == ("1h 2m", "42s", "4.2s")
    assert (byte_size(123 << 20), byte_size(1536 << 20), byte_size(512)) == (
        "123 MiB",
        "1.5 GiB",
        "512 B",
    )
    assert (run_time(0.0123), run_time(0.25), run_time(1.5)) == ("12.3 ms", "250 ms", "1.50 s")


async def test_a_worker_process_reports_its_health(
    app: Conveyor, settings: Settings, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    app.enqueue_many("job", [{"sleep": 0.02}] * 5)
    app.enqueue_many("job", [{"fail": True}] * 2)  # three attempts each, all failed
    procs.queuer()
    procs.worker(processes=1, concurrency=4)
    await wait_until(lambda: finished(db, 7), message="seven jobs to end")

    def reported() -> tuple[Any, ...] | None:
        return db.execute(
            b"SELECT jobs_processed, jobs_failed, rss_bytes, busy_seconds FROM workers"
            b" WHERE jobs_processed = 11"
        ).fetchone()

    await wait_until(reported, message="a heartbeat with all eleven attempts")
    row = reported()
    assert row is not None
    processed, failed, rss, busy = row
    assert (processed, failed) == (11, 6)
    assert rss > 1 << 20 and busy > 0
    async with Admin(settings, pool_size=1) as admin:
        (worker,) = await admin.workers()
    assert worker.alive and worker.uptime_seconds > 0 and worker.rss_bytes == rss
    assert worker.avg_processing_seconds is not None
    assert abs(worker.avg_processing_seconds - busy / 11) < 1e-9
    assert not worker.postgres_only and worker.breakers_open == []


async def test_a_worker_without_redis_reports_the_mode_and_its_open_breakers(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    app.enqueue_many("job", [{"fail": True}] * 2)
    procs.worker(
        processes=1,
        concurrency=1,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        WORKER__POSTGRES_ONLY_AFTER="0.2s",
        CIRCUIT_BREAKER__ENABLED="true",
        CIRCUIT_BREAKER__FAILURE_THRESHOLD="2",
        CIRCUIT_BREAKER__COOLDOWN_PERIOD="1h",
    )

    def flags() -> tuple[Any, ...] | None:
        return db.execute(
            b"SELECT postgres_only, breakers_open, jobs_failed FROM workers"
            b" WHERE postgres_only AND breakers_open <> '{}'"
        ).fetchone()

    await wait_until(flags, timeout=30, message="postgres-only mode and an open breaker")
    assert flags() == (True, ["work"], 2), "two failures opened the breaker"
