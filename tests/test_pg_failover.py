"""PostgreSQL failover as an operator's setup meets it: a multi-host DATABASE_URL (libpq's
own failover, target_session_attrs=read-write), and a primary that turns read-only, which
is what a failover leaves behind on the old primary. Real processes; every test ends with
the queue check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import DatabaseUnavailable
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.store.migrate import migrate
from tests.apps import recording
from tests.conftest import make_settings, wait_until
from tests.factories import REDIS_URL
from tests.processes import (
    PostgresServer,
    Processes,
    can_run_private_postgres,
    create_recording_tables,
    delete_keys,
    finished,
    free_port,
    queue_check,
    ran_each_once,
    terminal_snapshot,
)

pytestmark = pytest.mark.fault


def multi_host(url: str, dead_port: int) -> str:
    """`url` with a host that refuses connections listed first, as after a failover."""
    conninfo = psycopg.conninfo.conninfo_to_dict(url)
    host, port, dbname = (
        conninfo.get("host", "127.0.0.1"),
        conninfo.get("port", 5432),
        conninfo["dbname"],
    )
    return (
        f"postgresql://postgres@127.0.0.1:{dead_port},{host}:{port}/{dbname}"
        "?target_session_attrs=read-write"
    )


async def test_a_multi_host_url_skips_a_dead_host(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    url = multi_host(settings.database.url, free_port())
    through = settings_factory(**{"database.url": url})
    create_recording_tables(settings)
    app = Conveyor(through)
    app.tasks.update(recording.app.tasks)
    procs = Processes(through, tmp_path)
    try:
        # Every process and pool must skip the dead host; the job count adds nothing to that
        # (the 10,000-job run of scenario 20 is the PgBouncer test's).
        ids: list[Any] = []
        for start in range(0, 2_000, 500):
            ids += app.enqueue_many("job", [{"n": n} for n in range(start, start + 500)])
        assert (await app.aget_job(ids[0])).status in ("queued", "dispatched")  # async path
        procs.queuer()
        procs.queuer()
        procs.worker(processes=3, concurrency=20)
        await wait_until(lambda: finished(db, 2_000), timeout=300, interval=0.5, message="2,000")
        ran_each_once(db, ids)
    finally:
        procs.stop_all()
        app.close()
        await app.aclose()


@pytest.fixture
def private_server() -> Iterator[PostgresServer]:
    if not can_run_private_postgres():
        pytest.skip("needs root and PostgreSQL")
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


def set_read_only(url: str, on: bool) -> None:
    """What a failover leaves on the old primary (or an operator fencing it): every new
    transaction read-only, existing sessions included once they reread the configuration."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"SET default_transaction_read_only = off")
        if on:
            conn.execute(b"ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            conn.execute(b"ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute(b"SELECT pg_reload_conf()")


async def enqueue_until_refused(app: Conveyor) -> list[Any]:
    """Sessions reread the configuration between statements, some time after the reload:
    enqueue until one is refused as read-only, and return what committed before."""
    committed: list[Any] = []
    for _ in range(100):
        try:
            committed += app.enqueue_many("job", [{"n": 0}])
        except DatabaseUnavailable as error:
            assert "read-only" in str(error)
            return committed
        await asyncio.sleep(0.1)
    raise AssertionError("enqueue was never refused on a read-only server")


async def enqueue_when_accepted(app: Conveyor) -> list[Any]:
    for _ in range(100):
        with contextlib.suppress(DatabaseUnavailable):
            return app.enqueue_many("job", [{"n": 1}] * 10)
        await asyncio.sleep(0.1)
    raise AssertionError("enqueue kept failing once the server was writable")


async def test_a_primary_turned_read_only_is_an_outage(
    private_server: PostgresServer, tmp_path: Path
) -> None:
    server = private_server
    prefix = f"pgreadonly-{os.getpid()}-{time.monotonic_ns()}:"
    settings = make_settings(server.url, "conveyor", prefix, **{"database.connect_timeout": 1})
    migrate(settings.database.url, settings.database.schema_name)
    create_recording_tables(settings)
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    procs = Processes(settings, tmp_path)

    def check() -> psycopg.Connection[Any]:
        return psycopg.connect(server.url, options="-c search_path=conveyor", autocommit=True)

    try:
        ids = app.enqueue_many("job", [{"sleep": 0.01} for _ in range(2000)])
        queuer = procs.queuer()
        worker = procs.worker(processes=2, concurrency=8)
        with check() as conn:
            await wait_until(lambda: finished(conn, 300), timeout=60, message="progress")
        set_read_only(server.url, True)
        ids += await enqueue_until_refused(app)
        await asyncio.sleep(1.0)  # every other session has reread it by now
        with check() as conn:
            frozen = terminal_snapshot(conn)
            await asyncio.sleep(4)
            # Nothing commits on a read-only server, and nobody claims it did.
            assert terminal_snapshot(conn) == frozen, "a job changed on a read-only server"
        assert queuer.poll() is None and worker.poll() is None, "no process crashed"
        set_read_only(server.url, False)
        ids += await enqueue_when_accepted(app)
        with check() as conn:
            await wait_until(lambda: finished(conn, len(ids)), timeout=120, message="every job")
            assert queue_check(conn, ids) == {"completed": len(ids)}
            before = terminal_snapshot(conn)
            await asyncio.sleep(1.0)
            assert terminal_snapshot(conn) == before, "a terminal row changed after the fact"
        assert queuer.poll() is None and worker.poll() is None, "no process crashed"
        assert "read-only" in procs.logs(), "the outage was logged"
    finally:
        procs.stop_all()
        app.close()
        delete_keys(settings.redis.url, prefix)


class Standby(PostgresServer):
    """A hot standby of `primary`, streaming from it (pg_basebackup -R): promote() makes
    it the primary, as a failover manager would."""

    def __init__(self, primary: PostgresServer) -> None:  # no initdb: a base backup
        import pwd
        import tempfile

        self.bin = primary.bin
        self.port = free_port()
        self.user = pwd.getpwnam("postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-pg-standby-"))
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"
        self.process = None
        self._as_postgres(
            [
                str(self.bin / "pg_basebackup"),
                *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
                *("-D", str(self.data), "-R", "-X", "stream", "--no-sync"),
            ]
        )

    def promote(self) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(b"SELECT pg_promote(wait => true)")


async def test_a_multi_host_url_follows_a_promoted_standby(tmp_path: Path) -> None:
    """The primary dies mid-run (immediate shutdown) and its synchronous standby is
    promoted: every process finds it through the host list, and nothing acknowledged is
    lost."""
    if not can_run_private_postgres():
        pytest.skip("needs root and PostgreSQL")
    primary = PostgresServer()
    primary.start()
    standby: Standby | None = None
    prefix = f"pgfailover-{os.getpid()}-{time.monotonic_ns()}:"
    procs: Processes | None = None
    app: Conveyor | None = None
    try:
        standby = Standby(primary)
        standby.start()
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute(b"ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute(b"SELECT pg_reload_conf()")
            await wait_until(
                lambda: (
                    conn.execute(
                        b"SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                    ).fetchone()
                    == (1,)
                ),
                message="a synchronous standby",
            )
        url = (
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
            "?target_session_attrs=read-write"
        )
        settings = make_settings(url, "conveyor", prefix, **{"database.connect_timeout": 1})
        migrate(url, "conveyor")
        create_recording_tables(settings)
        app = Conveyor(settings)
        app.tasks.update(recording.app.tasks)
        procs = Processes(settings, tmp_path)
        ids = app.enqueue_many("job", [{"sleep": 0.01} for _ in range(2000)])
        queuer = procs.queuer()
        worker = procs.worker(processes=2, concurrency=8)

        def check() -> psycopg.Connection[Any]:
            return psycopg.connect(url, options="-c search_path=conveyor", autocommit=True)

        with check() as conn:
            await wait_until(lambda: finished(conn, 300), timeout=60, message="progress")
        primary.stop()
        with pytest.raises(DatabaseUnavailable):
            app.enqueue("job", {})
        standby.promote()
        ids += app.enqueue_many("job", [{"n": 1}] * 10)  # through the host list, to the standby
        with check() as conn:
            await wait_until(lambda: finished(conn, len(ids)), timeout=180, message="every job")
            assert queue_check(conn, ids) == {"completed": len(ids)}
            before = terminal_snapshot(conn)
            await asyncio.sleep(1.0)
            assert terminal_snapshot(conn) == before, "a terminal row changed after the fact"
            server = conn.execute(b"SELECT inet_server_port()").fetchone()
            assert server == (standby.port,)
        assert queuer.poll() is None and worker.poll() is None, "no process crashed"
    finally:
        if procs is not None:
            procs.stop_all()
        if app is not None:
            app.close()
        if standby is not None:
            standby.remove()
        primary.remove()
        delete_keys(REDIS_URL, prefix)
