"""The fault scenarios (SCENARIOS.md) on real worker and queuer processes.

Each test records every execution in an append-only table and ends with the queue check:
every committed enqueue ends completed or dead; executions per job <= attempts; no
terminal row changes afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.store.migrate import migrate
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import (
    Processes,
    RedisServer,
    can_run_private_postgres,
    children_of,
    create_recording_tables,
    delete_keys,
    free_port,
    queue_check,
    terminal_snapshot,
)

pytestmark = pytest.mark.fault


def finished(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')").fetchone()
    return int(row[0]) if row else 0


def executions(db: psycopg.Connection[Any], job_id: Any = None) -> list[tuple[Any, ...]]:
    if job_id is None:
        return db.execute(b"SELECT job_id, attempt, pid FROM executions ORDER BY at").fetchall()
    return db.execute(
        b"SELECT job_id, attempt, pid FROM executions WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()


async def settle_and_check(db: psycopg.Connection[Any], ids: list[Any]) -> dict[str, int]:
    """The queue check, plus: terminal rows do not change afterwards."""
    counts = queue_check(db, ids)
    before = terminal_snapshot(db)
    assert before, "no terminal rows to watch"
    await asyncio.sleep(1.0)
    assert terminal_snapshot(db) == before, "a terminal row changed after the fact"
    return counts


@pytest.fixture
def recording_app(app: Conveyor) -> Conveyor:
    app.tasks.update(recording.app.tasks)
    return app


async def test_sigkill_of_a_whole_worker_reruns_its_job(
    recording_app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    """Scenario 1: no supervisor survives to help; the rescuer finds the silent worker."""
    (job_id,) = recording_app.enqueue_many("job", [{"sleep": 1.0}])
    procs.queuer()
    victim = procs.worker(concurrency=1)
    await wait_until(lambda: len(executions(db)) == 1, message="first execution")
    os.killpg(victim.pid, signal.SIGKILL)
    procs.worker(concurrency=1)
    await wait_until(lambda: finished(db) == 1, timeout=30, message="the rerun")
    job = recording_app.get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 2)
    runs = executions(db, job_id)
    assert [run[1] for run in runs] == [1, 2]
    assert len({run[2] for run in runs}) == 2, "two executions from two pids"
    assert await settle_and_check(db, [job_id]) == {"completed": 1}


async def test_sigkill_after_the_side_effect_leaves_one_effect(
    recording_app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    """Scenario 2: at-least-once; the job id as idempotency key keeps one effect."""
    (job_id,) = recording_app.enqueue_many("job", [{"effect": True, "kill_on_attempts": [1]}])
    procs.queuer()
    procs.worker(concurrency=1)
    await wait_until(lambda: finished(db) == 1, timeout=30, message="completion")
    assert recording_app.get_job(job_id).attempt == 2
    assert len(executions(db, job_id)) == 2
    assert db.execute(b"SELECT count(*) FROM effects").fetchone() == (1,)
    lost = db.execute(b"SELECT status, log_message FROM job_logs ORDER BY attempt_number")
    assert lost.fetchall() == [("lost", "worker lost"), ("completed", None)]


async def test_a_stopped_worker_is_fenced_when_it_wakes(
    recording_app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    """Scenario 3: SIGSTOP past the lease; the late completion changes nothing."""
    (job_id,) = recording_app.enqueue_many("job", [{"sleep": 2.0}])
    procs.queuer()
    stale = procs.worker(concurrency=1)
    await wait_until(lambda: len(executions(db)) == 1, message="first execution")
    os.killpg(stale.pid, signal.SIGSTOP)
    try:
        procs.worker(concurrency=1)
        await wait_until(lambda: finished(db) == 1, timeout=30, message="completion elsewhere")
        snapshot = terminal_snapshot(db)
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
    await wait_until(lambda: "stale attempt" in procs.logs(), message="the fenced completion")
    assert terminal_snapshot(db) == snapshot
    job = recording_app.get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 2)
    assert await settle_and_check(db, [job_id]) == {"completed": 1}


async def test_poison_pill_ends_dead_while_other_jobs_flow(
    recording_app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    """Scenario 12: the handler kills its process on every attempt."""
    (poison_id,) = recording_app.enqueue_many("poison", [{}])
    good = recording_app.enqueue_many("job", [{"n": n} for n in range(30)])
    procs.queuer()
    supervisor = procs.worker(queues="poison,work", processes=2, concurrency=2)
    await wait_until(lambda: finished(db) == 31, timeout=60, message="every job to end")
    poison = recording_app.get_job(poison_id)
    assert (poison.status, poison.attempt, poison.last_error) == ("dead", 3, "worker lost")
    assert await settle_and_check(db, [poison_id, *good]) == {"completed": 30, "dead": 1}
    assert supervisor.poll() is None, "the supervisor is still running"
    assert len(children_of(supervisor.pid)) >= 1


async def test_terminating_every_postgres_backend_loses_nothing(
    recording_app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    """Scenario 10 (part): pg_terminate_backend on every Conveyor connection, twice."""
    ids = recording_app.enqueue_many("job", [{"sleep": 0.01} for _ in range(1500)])
    procs.queuer()
    worker = procs.worker(processes=2, concurrency=8)
    for _ in range(2):
        await wait_until(lambda: finished(db) >= 300, message="progress")
        # This test's connections only: every statement names the schema. A server-wide
        # kill also ended the connections of a test running beside this one (two pytest
        # processes), whose producer then timed out waiting for its pool.
        killed = db.execute(
            b"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            b"WHERE application_name LIKE 'conveyor-%%' AND pid <> pg_backend_pid() "
            b"AND datname = current_database() AND query LIKE %s",
            (f"%{recording_app.settings.database.schema_name}%",),
        ).fetchone()
        # The queuer's, the supervisor's and both worker processes' connections at least.
        assert killed is not None and killed[0] >= 4, killed
        await asyncio.sleep(0.5)
    await wait_until(lambda: finished(db) == 1500, timeout=120, message="every job")
    assert await settle_and_check(db, ids) == {"completed": 1500}
    assert worker.poll() is None
    stuck = db.execute(b"SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
    assert stuck == (0,)


# -- Redis faults, each on a private redis-server --------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def private_setup(
    settings_factory: Any,
    server: RedisServer,
    tmp_path: Path,
) -> tuple[Settings, Conveyor, Processes]:
    settings = settings_factory(**{"redis.url": server.url})
    migrate(settings.database.url, settings.database.schema_name)
    create_recording_tables(settings)
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    logs = tmp_path / "logs"
    logs.mkdir()
    return settings, app, Processes(settings, logs)


async def test_flushall_during_a_run_loses_nothing(
    settings_factory: Any,
    private_redis: RedisServer,
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    """Scenario 7: FLUSHALL mid-run; dispatched jobs are rebuilt from PostgreSQL."""
    _, app, procs = private_setup(settings_factory, private_redis, tmp_path)
    try:
        ids = app.enqueue_many("job", [{"n": n} for n in range(5000)])
        procs.queuer()
        procs.worker(processes=2, concurrency=10)
        await wait_until(lambda: finished(db) >= 1000, timeout=60, message="progress")
        client = private_redis.client()
        client.flushall()
        client.close()
        await wait_until(lambda: finished(db) == 5000, timeout=180, message="every job")
        assert await settle_and_check(db, ids) == {"completed": 5000}
        assert "Redis was empty" in procs.logs()
    finally:
        procs.stop_all()
        app.close()


async def test_redis_down_then_back_loses_nothing(
    settings_factory: Any,
    private_redis: RedisServer,
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    """Scenario 8: enqueue keeps working, readiness says why (postgres-only mode), nothing
    crash-loops."""
    _, app, procs = private_setup(settings_factory, private_redis, tmp_path)
    port = free_port()
    try:
        ids = app.enqueue_many("job", [{"n": n} for n in range(1000)])
        queuer = procs.queuer("--health-port", str(port))
        worker = procs.worker(processes=1, concurrency=8)
        await wait_until(lambda: finished(db) >= 200, timeout=60, message="progress")
        private_redis.stop()
        ids += app.enqueue_many("job", [{"n": n} for n in range(500)])  # PostgreSQL only
        # PostgreSQL answers, so the queuer stays ready and names the mode instead.
        await wait_until(lambda: "postgres-only" in _readyz(port)[1], message="the mode")
        status, body = _readyz(port)
        assert status == 200 and "Redis unreachable" in body
        await asyncio.sleep(10)
        assert queuer.poll() is None and worker.poll() is None, "no process crashed"
        private_redis.start()
        await wait_until(lambda: finished(db) == 1500, timeout=120, message="the backlog")
        await wait_until(lambda: '"normal"' in _readyz(port)[1], message="the mode to end")
        assert await settle_and_check(db, ids) == {"completed": 1500}
    finally:
        procs.stop_all()
        app.close()


async def test_evicted_lanes_are_rebuilt(
    settings_factory: Any, tmp_path: Path, db: psycopg.Connection[Any]
) -> None:
    """Scenario 9: allkeys-lru under memory pressure evicts lanes; nothing is lost."""
    server = RedisServer(tmp_path, "--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru")
    server.start()
    _, app, procs = private_setup(settings_factory, server, tmp_path)
    try:
        ids = app.enqueue_many("job", [{"sleep": 0.002} for _ in range(3000)])
        procs.queuer()
        procs.worker(processes=1, concurrency=4)
        client = server.client()
        filler = b"x" * 10_000
        deadline = time.monotonic() + 120
        n = 0
        while finished(db) < 3000 and time.monotonic() < deadline:
            for _ in range(50):  # keep memory full so Redis keeps evicting
                client.set(f"filler:{n}", filler)
                n += 1
            await asyncio.sleep(0.05)
        evicted = int(client.info("stats")["evicted_keys"])
        client.close()
        assert evicted > 0, "the test must actually make Redis evict"
        assert finished(db) == 3000, "every job ended despite eviction"
        logs = procs.logs()
        assert "missing from Redis" in logs or "Redis was empty" in logs, "healing happened"
        assert await settle_and_check(db, ids) == {"completed": 3000}
        assert "maxmemory-policy is allkeys-lru" in procs.logs()
    finally:
        procs.stop_all()
        app.close()
        server.stop()


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.skipif(not can_run_private_postgres(), reason="needs root and PostgreSQL binaries")
async def test_postgres_restart_loses_nothing_and_enqueue_fails_clearly(
    tmp_path: Path,
) -> None:
    """Scenario 10: PostgreSQL goes away mid-run and comes back."""
    from conveyor import DatabaseUnavailable
    from tests.conftest import make_settings
    from tests.processes import PostgresServer

    server = PostgresServer()
    server.start()
    prefix = f"pgrestart-{os.getpid()}-{time.monotonic_ns()}:"
    settings = make_settings(server.url, "conveyor", prefix, **{"database.connect_timeout": 1})
    migrate(settings.database.url, settings.database.schema_name)
    create_recording_tables(settings)
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    procs = Processes(settings, tmp_path)
    try:
        ids = app.enqueue_many("job", [{"sleep": 0.005} for _ in range(1500)])
        queuer = procs.queuer()
        worker = procs.worker(processes=2, concurrency=8)

        def done() -> int:
            with psycopg.connect(server.url, options="-c search_path=conveyor") as conn:
                return finished(conn)

        await wait_until(lambda: done() >= 300, timeout=60, message="progress")
        server.stop()
        with pytest.raises(DatabaseUnavailable, match="PostgreSQL is unavailable"):
            app.enqueue("job", {})
        await asyncio.sleep(3)
        assert queuer.poll() is None and worker.poll() is None, "no process crashed"
        server.start()
        await wait_until(lambda: done() == 1500, timeout=120, message="every job")
        with psycopg.connect(server.url, options="-c search_path=conveyor") as conn:
            assert await settle_and_check(conn, ids) == {"completed": 1500}
            stuck = conn.execute(b"SELECT count(*) FROM jobs WHERE status = 'running'")
            assert stuck.fetchone() == (0,)
    finally:
        procs.stop_all()
        app.close()
        server.remove()
        delete_keys(settings.redis.url, prefix)
