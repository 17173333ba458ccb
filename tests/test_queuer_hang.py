"""Issue 18, item 4: both queuers went silent at once under randomized faults.

The reproduction: two queuers (both eligible for maintenance) and a two-process worker run
through a minute of random faults on a private Redis (SIGKILL and restart empty, SIGSTOP
then SIGCONT, FLUSHALL) and on PostgreSQL (every backend of this test's processes
terminated), under CPU load. Then each queuer must dispatch on its own while the other is
stopped: a queuer hung on an await that never returns fails here, even when the other
hides it by dispatching everything.

The cause found (at 4dfb385 and before): a queuer that was not the leader asked for the
leader lock on its LISTEN connection while its notification task iterated notifies() on
that same connection; psycopg holds the connection's lock for as long as notifies() waits,
so the lock request waited forever, inside the dispatch loop. A burst of terminations made
both queuers reconnect at once and both miss the lock (the dying leader still held it),
so both hung on their next pass. store/listen.py now has one task own that connection.

To watch the test catch it, run the processes on the old code:
CONVEYOR_TEST_SOURCE=<a checkout of 4dfb385>/src pytest tests/test_queuer_hang.py
(the liveness settings are then left out: that code does not know them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.launch import settings_env
from conveyor.store.migrate import migrate
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, RedisServer, create_recording_tables, queue_check

pytestmark = pytest.mark.fault

# 30 s reproduces the hang on the old code within its first passes; set more for a soak.
FAULT_SECONDS = float(os.environ.get("CONVEYOR_TEST_FAULT_SECONDS", "30"))
OLD_SOURCE = os.environ.get("CONVEYOR_TEST_SOURCE")
LIVENESS = {
    "liveness.database_deadline": 3.0,
    "liveness.listen_check_interval": 1.0,
    "liveness.watchdog_bound": 30.0,
    "liveness.watchdog_grace": 1.0,
    "redis.socket_timeout": 2.0,
    "worker.lease": 8.0,
    "database.pool_size": 3,  # the server is shared: stay well inside max_connections
}


@contextlib.contextmanager
def cpu_load(processes: int = 2) -> Iterator[None]:
    """Busy loops competing for the CPUs, stopped by pid."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)


class Faults:
    """Random faults on the private Redis and on this schema's PostgreSQL backends."""

    def __init__(self, redis: RedisServer, db: psycopg.Connection[Any], schema: str) -> None:
        self.redis = redis
        self.db = db
        self.schema = schema
        self.stopped = False
        self.log: list[str] = []

    def terminate_backends(self) -> None:
        # Only this test's processes: the shared server serves other tests too. The
        # producer (the test itself) is spared; its enqueues must not be ambiguous.
        self.db.execute(
            b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            b"WHERE datname = current_database() AND pid <> pg_backend_pid() "
            b"AND application_name LIKE 'conveyor-%%' AND application_name <> 'conveyor-client' "
            b"AND query LIKE %s",
            (f"%{self.schema}%",),
        )

    def resume_redis(self) -> None:
        process = self.redis.process
        if process is None:
            self.redis.start()
        elif self.stopped:
            os.kill(process.pid, signal.SIGCONT)
        self.stopped = False

    async def one(self, rng: random.Random) -> None:
        fault = rng.choice(["terminate", "terminate", "kill", "stop", "flush"])
        self.log.append(fault)
        if fault == "terminate":
            for _ in range(rng.randint(1, 3)):  # a burst
                self.terminate_backends()
                await asyncio.sleep(rng.uniform(0.05, 0.3))
        elif fault == "kill":
            self.redis.stop()  # SIGKILL: it comes back empty
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            self.redis.start()
        elif fault == "stop":
            assert self.redis.process is not None
            os.kill(self.redis.process.pid, signal.SIGSTOP)
            self.stopped = True
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            self.resume_redis()
        else:
            client = self.redis.client()
            with contextlib.suppress(Exception):
                client.flushall()
            client.close()


async def test_two_queuers_keep_dispatching_under_random_faults(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    settings = settings_factory(**{"redis.url": redis.url, **LIVENESS})
    migrate(settings.database.url, settings.database.schema_name)
    create_recording_tables(settings)
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    env: dict[str, str] = {}
    if OLD_SOURCE:
        env["PYTHONPATH"] = OLD_SOURCE
        procs = Processes(settings_factory(**{"redis.url": redis.url}), tmp_path)
    else:
        env = settings_env(settings, list(LIVENESS))
        procs = Processes(settings, tmp_path)
    seed = int(os.environ.get("CONVEYOR_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    faults = Faults(redis, db, settings.database.schema_name)
    ids: list[Any] = []
    try:
        ids += app.enqueue_many("job", [{"sleep": 0.01} for _ in range(3000)])
        first = procs.queuer(**env)
        second = procs.queuer(**env)
        worker = procs.worker(processes=2, concurrency=8, **env)
        with cpu_load():
            deadline = time.monotonic() + FAULT_SECONDS
            while time.monotonic() < deadline:
                await faults.one(rng)
                await asyncio.sleep(rng.uniform(0.5, 2.5))
        faults.resume_redis()
        print(f"\nseed {seed}: faults {', '.join(faults.log)}")

        def finished() -> int:
            row = db.execute(
                b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')"
            ).fetchone()
            return int(row[0]) if row else 0

        def reaches(total: int) -> Callable[[], bool]:
            return lambda: finished() == total

        await wait_until(reaches(len(ids)), timeout=180, message="every job")
        # Each queuer alone must dispatch: the other is stopped meanwhile.
        for alone, other in ((first, second), (second, first)):
            os.killpg(other.pid, signal.SIGSTOP)
            try:
                ids += app.enqueue_many("job", [{"n": n} for n in range(100)])
                await wait_until(
                    reaches(len(ids)),
                    timeout=60,
                    message=f"queuer pid {alone.pid} dispatching alone (seed {seed})",
                )
            finally:
                os.killpg(other.pid, signal.SIGCONT)
        counts = queue_check(db, ids)
        assert counts.get("completed", 0) + counts.get("dead", 0) == len(ids)
        for process in (first, second, worker):
            assert process.poll() is None, "a process exited"
        assert "is stuck" not in procs.logs(), "the watchdog found a stuck loop"
    finally:
        procs.stop_all()
        faults.resume_redis()
        app.close()
        redis.stop()
