"""The whole system through a transaction-mode PgBouncer (1.18: no prepared statements in
transaction mode, `options` dropped): producer, two queuers and a three-process worker,
with database.pooler_mode: transaction. Without database.direct_url the queuers poll and
elect their leader with a lease row; with it they LISTEN and hold the session lock there."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.store.listen import leader_lock_id
from conveyor.store.migrate import available_migrations, migrate
from tests.apps import recording
from tests.conftest import drop_namespace, wait_until
from tests.factories import REDIS_URL, new_namespace
from tests.processes import (
    Processes,
    create_recording_tables,
    finished,
    queue_check,
    ran_each_once,
)
from tests.servers import PgBouncer, find_command

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(find_command("pgbouncer") is None, reason="needs pgbouncer"),
]


@pytest.fixture
def bouncer(settings: Settings, tmp_path: Path) -> Iterator[PgBouncer]:
    db = psycopg.conninfo.conninfo_to_dict(settings.database.url)
    with PgBouncer(
        str(db.get("host", "127.0.0.1")),
        int(db.get("port", 5432)),
        tmp_path,
        default_pool_size=10,
        max_client_conn=400,
    ) as server:
        yield server


@pytest.fixture
def pooled(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    bouncer: PgBouncer,
    tmp_path: Path,
) -> Iterator[tuple[Settings, Conveyor, Processes]]:
    """Settings, a producer app and the process starter, all through the PgBouncer; the
    schema is migrated (by the `settings` fixture) on the server itself."""
    dbname = psycopg.conninfo.conninfo_to_dict(settings.database.url)["dbname"]
    through = settings_factory(
        **{"database.url": bouncer.url(str(dbname)), "database.pooler_mode": "transaction"}
    )
    create_recording_tables(settings)
    app = Conveyor(through)
    app.tasks.update(recording.app.tasks)
    running = Processes(through, tmp_path)
    yield through, app, running
    running.stop_all()
    app.close()


def enqueue_10k(app: Conveyor) -> list[Any]:
    ids: list[Any] = []
    for start in range(0, 10_000, 2_000):
        ids += app.enqueue_many("job", [{"n": n} for n in range(start, start + 2_000)])
    return ids


def assert_each_ran_once(db: psycopg.Connection[Any], ids: list[Any]) -> None:
    ran_each_once(db, ids)
    pids = db.execute(b"SELECT count(DISTINCT pid) FROM executions").fetchone()
    assert pids is not None and pids[0] == 3, "all three worker processes took part"


def session_lock_holders(db: psycopg.Connection[Any], lock: int) -> list[str]:
    rows = db.execute(
        b"SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        b"WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s::bigint::oid "
        b"AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (lock,),
    ).fetchall()
    return [str(row[0]) for row in rows]


def lease_holder(db: psycopg.Connection[Any]) -> str | None:
    row = db.execute(b"SELECT holder FROM leader WHERE expires_at > now()").fetchone()
    return str(row[0]) if row else None


def running(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
    return int(row[0]) if row else 0


async def test_10k_jobs_exactly_once_through_pgbouncer_with_a_lease_leader(
    pooled: tuple[Settings, Conveyor, Processes], db: psycopg.Connection[Any]
) -> None:
    _, app, procs = pooled
    ids = enqueue_10k(app)  # the producer's sync pool, through PgBouncer
    queuers = [procs.queuer(), procs.queuer()]
    procs.worker(processes=3, concurrency=20)
    await wait_until(lambda: finished(db, 10_000), timeout=300, interval=0.5, message="10,000 jobs")
    assert_each_ran_once(db, ids)
    holder = lease_holder(db)
    assert holder is not None, "a queuer holds the maintenance lease"
    assert int(holder.split(":")[1]) in {q.pid for q in queuers}
    assert all(q.poll() is None for q in queuers)
    logs = procs.logs()
    assert "DuplicatePreparedStatement" not in logs and "prepared statement" not in logs
    jit = db.execute(b"SELECT current_setting('jit') = 'on' AND pg_jit_available()").fetchone()
    assert (jit == (True,)) == ("JIT is on" in logs), "the lost jit=off is reported, not hidden"


async def test_the_lease_passes_on_and_the_new_leader_rescues(
    pooled: tuple[Settings, Conveyor, Processes], db: psycopg.Connection[Any]
) -> None:
    """SIGKILL the leading queuer and a whole worker mid-run: the other queuer takes the
    lease once it runs out, and its rescuer gives the dead worker's jobs back."""
    _, app, procs = pooled
    queuers = {q.pid: q for q in (procs.queuer(), procs.queuer())}
    await wait_until(lambda: lease_holder(db) is not None, timeout=30, message="a leader")
    first = lease_holder(db)
    assert first is not None
    leader_pid = int(first.split(":")[1])
    ids = app.enqueue_many("job", [{"sleep": 0.5} for _ in range(60)])
    victim = procs.worker(processes=1, concurrency=10)
    await wait_until(lambda: running(db) >= 5, timeout=60, message="jobs running")
    os.killpg(queuers[leader_pid].pid, signal.SIGKILL)
    os.killpg(victim.pid, signal.SIGKILL)  # no supervisor left to rescue at once
    survivor = next(q for pid, q in queuers.items() if pid != leader_pid)
    await wait_until(
        lambda: (lease_holder(db) or ":0").split(":")[1] == str(survivor.pid),
        timeout=60,
        message="the lease passing to the other queuer",
    )
    procs.worker(processes=1, concurrency=10)
    await wait_until(lambda: finished(db, len(ids)), timeout=120, message="every job")
    assert queue_check(db, ids) == {"completed": len(ids)}
    lost = db.execute(b"SELECT count(*) FROM job_logs WHERE status = 'lost'").fetchone()
    assert lost is not None and lost[0] >= 1, "the new leader rescued the dead worker's jobs"
    assert survivor.poll() is None


async def test_direct_url_gives_listen_and_the_session_lock(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    bouncer: PgBouncer,
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(settings.database.url)["dbname"]
    through = settings_factory(
        **{
            "database.url": bouncer.url(str(dbname)),
            "database.pooler_mode": "transaction",
            "database.direct_url": settings.database.url,
            # Only NOTIFY can wake the queuers this soon: the poll is far slower.
            "queuer.poll_interval": "30s",
        }
    )
    create_recording_tables(settings)
    app = Conveyor(through)
    app.tasks.update(recording.app.tasks)
    procs = Processes(through, tmp_path)
    try:
        procs.queuer()
        procs.queuer()
        procs.worker(processes=3, concurrency=20)
        lock = leader_lock_id(settings.database.schema_name)
        await wait_until(
            lambda: session_lock_holders(db, lock) == ["conveyor-queuer-listen"],
            timeout=30,
            message="one queuer holding the session lock on the direct connection",
        )
        ids = enqueue_10k(app)
        await wait_until(lambda: finished(db, 10_000), timeout=300, interval=0.5, message="10,000")
        assert_each_ran_once(db, ids)
        assert lease_holder(db) is None, "no lease when a session is at hand"
    finally:
        procs.stop_all()
        app.close()


def test_migrate_runs_through_the_pooler(settings: Settings, bouncer: PgBouncer) -> None:
    """Its lock is a transaction lock: two runs at once through the pooler serialise, and
    no lock is left behind on a server connection for a third run to wait on forever."""
    schema, _ = new_namespace()
    dbname = str(psycopg.conninfo.conninfo_to_dict(settings.database.url)["dbname"])
    url = bouncer.url(dbname)
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda _: migrate(url, schema, 5), range(2)))
        assert sorted(len(run) for run in runs) == [0, len(available_migrations())]
        assert migrate(url, schema, 5) == []
    finally:
        drop_namespace(settings.database.url, schema, REDIS_URL, "unused-prefix:")
