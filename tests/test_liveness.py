"""Liveness: no process waits forever on a silent PostgreSQL or Redis (issue 18).

Every Conveyor process (2 queuers, a worker with 2 processes) reaches PostgreSQL and
Redis through a BlackholeProxy. Mid-run the proxy goes silent on every connection open at
that moment (bytes held both ways, nothing closed), while new connections pass. Every job
must still complete, at least once and never more often than it had attempts. The time
from the freeze to the first completion of a job enqueued after it is printed (the figures
in docs/benchmarks.md come from these runs); the wait for it is bounded by what the
configured timeouts allow.

The handlers record their executions on a direct connection (CONVEYOR_TEST_RECORD_URL),
so the record itself never goes silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.launch import settings_env
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, queue_check, terminal_snapshot
from tests.servers import BlackholeProxy

pytestmark = pytest.mark.fault

JOBS = 2000
LATE_JOBS = 200  # enqueued (on a direct connection) right after the freeze
# Short deadlines, so a silent connection is given up within seconds.
LIVENESS = {
    "liveness.database_deadline": 3.0,
    "liveness.listen_check_interval": 1.0,
    "liveness.watchdog_bound": 30.0,
    "liveness.watchdog_grace": 1.0,
    "redis.socket_timeout": 2.0,
    "database.connect_timeout": 2.0,
    "worker.lease": 8.0,
    # Silent connections keep their server backends until the proxy lets go: small pools
    # keep this test well inside a shared server's max_connections.
    "database.pool_size": 3,
}
# The longest a silent connection can hold up recovery with the settings above: a
# statement's deadline, the leader lock freed by PostgreSQL's idle_session_timeout (3
# checks + 5 s), a lease, a reconcile pass, Redis's two socket timeouts and the loops'
# back-off (5 s at most), with room for a loaded machine.
RECOVERY_BOUND = 3.0 + (3 * 1.0 + 5) + 8.0 + 1.0 + 2 * 2.0 + 5.0 + 30.0


def proxied_url(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@dataclass
class Proxied:
    settings: Settings  # what the processes use: both servers through the proxies
    postgres: BlackholeProxy
    redis: BlackholeProxy
    procs: Processes
    env: dict[str, str]

    def start(self) -> None:
        self.procs.queuer(**self.env)
        self.procs.queuer(**self.env)
        self.procs.worker(processes=2, concurrency=8, **self.env)


@pytest.fixture
def proxied(
    settings: Settings, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[Proxied]:
    from tests.processes import create_recording_tables

    create_recording_tables(settings)
    pg_host, pg_port = address(settings.database.url, 5432)
    redis_host, redis_port = address(settings.redis.url, 6379)
    with BlackholeProxy(pg_host, pg_port) as pg, BlackholeProxy(redis_host, redis_port) as rd:
        through = settings_factory(
            **{
                "database.url": proxied_url(settings.database.url, pg.port),
                "redis.url": proxied_url(settings.redis.url, rd.port),
                **LIVENESS,
            }
        )
        env = settings_env(through, [*LIVENESS, "worker.lease"])
        env["CONVEYOR_TEST_RECORD_URL"] = settings.database.url
        procs = Processes(through, tmp_path)
        try:
            yield Proxied(through, pg, rd, procs, env)
        finally:
            procs.stop_all()


def finished(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')").fetchone()
    return int(row[0]) if row else 0


def first_completion_after(db: psycopg.Connection[Any], frozen_at: Any) -> float | None:
    """Seconds from the freeze to the first completion of a job enqueued after it: the
    whole path (wake-up, dispatch, push, pop, claim, run, record) works again. (Jobs
    dispatched or popped before the freeze could finish without it.)"""
    row = db.execute(
        b"SELECT extract(epoch FROM min(completed) - %s) FROM jobs "
        b"WHERE status = 'completed' AND created > %s",
        (frozen_at, frozen_at),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def run_frozen(
    app: Conveyor,
    db: psycopg.Connection[Any],
    system: Proxied,
    freeze: list[BlackholeProxy],
    label: str,
) -> None:
    app.tasks.update(recording.app.tasks)
    ids = app.enqueue_many("job", [{"sleep": 0.005} for _ in range(JOBS)])
    system.start()
    await wait_until(lambda: finished(db) >= JOBS // 5, timeout=120, message="progress")
    row = db.execute(b"SELECT now()").fetchone()
    assert row is not None
    frozen_at = row[0]
    for proxy in freeze:
        proxy.freeze()
    ids += app.enqueue_many("job", [{"sleep": 0.005} for _ in range(LATE_JOBS)])
    await wait_until(
        lambda: first_completion_after(db, frozen_at) is not None,
        timeout=RECOVERY_BOUND,
        message=f"a job enqueued after the {label} freeze to complete",
    )
    recovery = first_completion_after(db, frozen_at)
    await wait_until(lambda: finished(db) == len(ids), timeout=240, message="every job")
    print(f"\n{label} silent: first completion of a job enqueued after it {recovery:.1f} s")
    for proxy in freeze:
        proxy.thaw()  # the held bytes arrive late: a stale statement must change nothing
    counts = queue_check(db, ids)
    assert counts == {"completed": len(ids)}
    before = terminal_snapshot(db)
    assert before, "no terminal rows to watch"
    await asyncio.sleep(2.0)
    assert terminal_snapshot(db) == before, "a terminal row changed after the fact"
    for process in system.procs.started:
        assert process.poll() is None, "a process died"


async def test_silent_postgres(
    app: Conveyor, db: psycopg.Connection[Any], proxied: Proxied
) -> None:
    await run_frozen(app, db, proxied, [proxied.postgres], "PostgreSQL")
    logs = proxied.procs.logs()
    assert "did not answer" in logs, "a deadline cut a silent connection"


async def test_silent_redis(app: Conveyor, db: psycopg.Connection[Any], proxied: Proxied) -> None:
    await run_frozen(app, db, proxied, [proxied.redis], "Redis")


async def test_silent_postgres_and_redis(
    app: Conveyor, db: psycopg.Connection[Any], proxied: Proxied
) -> None:
    await run_frozen(app, db, proxied, [proxied.postgres, proxied.redis], "PostgreSQL and Redis")
