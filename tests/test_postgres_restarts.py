"""Stress: a private PostgreSQL stopped and started again and again (immediate shutdown),
its backends terminated in bursts, and turned read-only for spells, under CPU load, with a
queuer (uvloop) and a supervised worker attached. No process may die, and every job must
complete.

A queuer once died here of SIGABRT with no Python traceback (issue 10, item 6): every
conveyor process now enables faulthandler, so a fatal signal leaves its stack in the log,
which this test prints when a process is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import DatabaseUnavailable
from conveyor.app import Conveyor
from conveyor.store.migrate import migrate
from tests.apps import recording
from tests.conftest import make_settings, wait_until
from tests.processes import (
    PostgresServer,
    Processes,
    can_run_private_postgres,
    create_recording_tables,
    delete_keys,
    queue_check,
    terminal_snapshot,
)
from tests.test_pg_failover import set_read_only

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(not can_run_private_postgres(), reason="needs root and PostgreSQL"),
]

# 10 rounds by default (6 immediate shutdowns, 2 bursts of terminated backends, 2 spells
# of a read-only server); set CONVEYOR_TEST_RESTART_ROUNDS for a longer soak.
ROUNDS = int(os.environ.get("CONVEYOR_TEST_RESTART_ROUNDS", "10"))
FAULTS = ("restart", "restart", "terminate", "restart", "read_only")
JOBS_PER_ROUND = 150
# Each burner is a busy loop with its own end, so none outlives the test by much even if
# the test process itself is killed.
BURN_SECONDS = 600
BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


@contextlib.contextmanager
def cpu_load(burners: int) -> Iterator[None]:
    busy = BUSY_LOOP.format(seconds=BURN_SECONDS)
    started = [subprocess.Popen([sys.executable, "-c", busy]) for _ in range(burners)]
    try:
        yield
    finally:
        for process in started:
            process.kill()
            process.wait(10)


def terminate_conveyor_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
        row = conn.execute(
            b"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            b"WHERE application_name LIKE 'conveyor%%' AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(row[0]) if row else 0


def enqueue_retrying(app: Conveyor, count: int) -> list[Any]:
    """The enqueue either commits or raises; right after a restart it may raise once."""
    for _ in range(50):
        try:
            # Many attempts: the recording handler itself writes to PostgreSQL, so each
            # outage may fail an attempt; the test is about processes, not retry budgets.
            payloads = [{"sleep": 0.002} for _ in range(count)]
            return app.enqueue_many("job", payloads, max_attempts=25)
        except DatabaseUnavailable:
            time.sleep(0.2)
    raise AssertionError("enqueue kept failing with PostgreSQL up")


def finished(url: str) -> int:
    with psycopg.connect(url, options="-c search_path=conveyor", connect_timeout=2) as conn:
        row = conn.execute(
            b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')"
        ).fetchone()
        return int(row[0]) if row else 0


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def test_postgres_restarts_under_load_kill_no_process(tmp_path: Path) -> None:
    server = PostgresServer()
    server.start()
    prefix = f"pgstress-{os.getpid()}-{time.monotonic_ns()}:"
    settings = make_settings(server.url, "conveyor", prefix, **{"database.connect_timeout": 1})
    migrate(settings.database.url, settings.database.schema_name)
    create_recording_tables(settings)
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    procs = Processes(settings, tmp_path)
    rng = random.Random(os.getpid())  # timing jitter only
    ids: list[Any] = []
    try:
        with cpu_load(2):
            queuer = procs.queuer()
            worker = procs.worker(processes=2, concurrency=8)
            watched = {"queuer": queuer, "worker": worker}
            for round_number in range(ROUNDS):
                ids += enqueue_retrying(app, JOBS_PER_ROUND)
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                fault = FAULTS[round_number % len(FAULTS)]
                if fault == "restart":
                    server.stop()  # SIGQUIT: immediate shutdown, every connection cut
                    await asyncio.sleep(rng.uniform(0.1, 2.0))
                    server.start()
                elif fault == "terminate":
                    for _ in range(rng.randint(2, 5)):  # backends die, the server stays
                        terminate_conveyor_backends(server.url)
                        await asyncio.sleep(rng.uniform(0.0, 0.3))
                else:
                    # Statements fail while every session stays open (the LISTEN one too):
                    # the queuer then closes a session whose task is still waiting on it.
                    set_read_only(server.url, True)
                    await asyncio.sleep(rng.uniform(0.5, 2.0))
                    set_read_only(server.url, False)
                dead = {name: p.returncode for name, p in watched.items() if p.poll() is not None}
                assert not dead, f"round {round_number}: {dead}\n{procs.logs()[-6000:]}"
            await wait_until(
                lambda: finished(server.url) >= len(ids),
                timeout=240,
                interval=0.5,
                message=f"all {len(ids)} jobs",
            )
            dead = {name: p.returncode for name, p in watched.items() if p.poll() is not None}
            assert not dead, f"{dead}\n{procs.logs()[-6000:]}"
        with psycopg.connect(server.url, options="-c search_path=conveyor") as conn:
            assert queue_check(conn, ids) == {"completed": len(ids)}
            before = terminal_snapshot(conn)
            assert before
            await asyncio.sleep(1.0)
            assert terminal_snapshot(conn) == before, "a terminal row changed after the fact"
        assert queuer.poll() is None and worker.poll() is None, "no process died"
        assert "Fatal Python error" not in procs.logs()
    finally:
        procs.stop_all()
        app.close()
        server.remove()
        delete_keys(settings.redis.url, prefix)
