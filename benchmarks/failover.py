"""How long Conveyor stops when its Redis is SIGKILLed mid-run.

Real processes (one queuer, one worker supervisor with 2 processes, the no-op task of
`conveyor bench`) drain a backlog of no-op jobs through a private Redis. Once a fifth of
them are done, the primary redis-server is SIGKILLed, and the figure is the time from the
kill to the first completion of 20 urgent jobs enqueued just after the kill (so they can
only travel through the new Redis), both read from PostgreSQL's clock. Then every job
must complete.

  --mode urls       primary + backup redis-server; BACKUP_REDIS_URL, REDIS_FAILOVER_AFTER
  --mode sentinel   primary, replica and three sentinels (down-after-milliseconds 1000,
                    as tests/servers.py starts them); REDIS_SENTINEL_NODES

Run from the repository root (it borrows the test suite's server helpers):
  PYTHONPATH=src .venv/bin/python benchmarks/failover.py --mode both --runs 2
It drops and recreates the schema `conveyor_failover_bench`; like `conveyor bench`, it
refuses to drop that schema if an earlier scratch run did not create it, or if the
configuration names it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.servers

from tests.processes import RedisServer
from tests.servers import SentinelSet

from conveyor.app import Conveyor
from conveyor.bench import QUEUE, TASK
from conveyor.config import Settings, load_settings
from conveyor.launch import Launcher, reset_namespace, settings_env
from conveyor.store.migrate import migrate
from conveyor.store.scratch import drop_scratch_schema

SCHEMA = "conveyor_failover_bench"
PREFIX = "failover_bench:"


@dataclass
class Outcome:
    mode: str
    to_first_completion: float
    to_all_completed: float
    jobs: int


async def _noop(payload: Any) -> None:
    return None


def query(settings: Settings, sql: bytes, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def wait_for(
    settings: Settings,
    sql: bytes,
    what: str,
    timeout: float,
    launcher: Launcher,
    params: tuple[Any, ...] = (),
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if launcher.dead():
            raise RuntimeError(f"a process died:\n{launcher.logs()[-3000:]}")
        value = query(settings, sql, params)
        if value:
            return value
        time.sleep(0.02)
    lines = [line for line in launcher.logs().splitlines() if "conveyor.queuer" in line]
    raise RuntimeError(
        f"no {what} within {timeout:g} s; the queuer said:\n" + "\n".join(lines[-30:])
    )


@contextlib.contextmanager
def servers(mode: str, tmp: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    """(primary URL, environment for the processes, a function that SIGKILLs the primary)."""
    if mode == "sentinel":
        with SentinelSet(tmp) as redis_ha:
            env = {"REDIS_SENTINEL_NODES": ",".join(redis_ha.nodes)}
            yield redis_ha.primary.url, env, redis_ha.kill_primary
        return
    primary, backup = RedisServer(tmp), RedisServer(tmp)
    try:
        primary.start()
        backup.start()
        yield primary.url, {"BACKUP_REDIS_URL": backup.url}, primary.stop
    finally:
        primary.stop()
        backup.stop()


def run_once(mode: str, options: argparse.Namespace, configured: Settings) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="conveyor-failover-") as folder:
        tmp = Path(folder)
        (tmp / "redis").mkdir()
        with servers(mode, tmp / "redis") as (url, env, kill):
            settings = load_settings(
                env={},
                overrides={
                    "database.url": configured.database.url,
                    "database.schema": SCHEMA,
                    "redis.url": url,
                    "redis.key_prefix": PREFIX,
                    "log.level": "info",
                },
            )
            db, rd = settings.database, settings.redis
            reset_namespace(db.url, db.schema_name, rd.url, rd.key_prefix, configured)
            migrate(db.url, db.schema_name)
            app = Conveyor(settings)
            app.task(name=TASK, queue=QUEUE, max_attempts=1)(_noop)
            env["REDIS_FAILOVER_AFTER"] = options.failover_after
            launcher = Launcher(settings_env(settings, ("log.level",)), tmp / "logs")
            try:
                for start in range(0, options.jobs, 1000):
                    app.enqueue_many(TASK, [{}] * min(1000, options.jobs - start))
                launcher.queuer(**env)
                launcher.worker("conveyor.bench.tasks:app", [QUEUE], 2, 50, **env)
                done = b"SELECT count(*) >= %s FROM jobs WHERE status = 'completed'"
                wait_for(settings, done, "progress", 120, launcher, (options.jobs // 5,))
                kill()
                killed_at = query(settings, b"SELECT clock_timestamp()")
                # Jobs enqueued after the kill can only travel through the new Redis; they
                # are urgent, so they do not queue behind the backlog.
                marked = app.enqueue_many(TASK, [{}] * 20, priority=1)
                first = wait_for(
                    settings,
                    b"SELECT min(completed) FROM jobs WHERE status = 'completed' AND id = ANY(%s)",
                    "completion after the kill",
                    120,
                    launcher,
                    (marked,),
                )
                every = b"SELECT count(*) = %s FROM jobs WHERE status = 'completed'"
                wait_for(settings, every, "every job", 300, launcher, (options.jobs + 20,))
                last = query(settings, b"SELECT max(completed) FROM jobs")
            finally:
                launcher.stop()
                app.close()
                # The Redis servers go away with the run; only the schema is left to drop.
                drop_scratch_schema(db.url, db.schema_name, configured.database.schema_name)
    return Outcome(
        mode,
        (first - killed_at).total_seconds(),
        (last - killed_at).total_seconds(),
        options.jobs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("urls", "sentinel", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--failover-after", default="5s", help="redis.failover_after (urls)")
    options = parser.parse_args()
    configured = load_settings()
    modes = ("urls", "sentinel") if options.mode == "both" else (options.mode,)
    for run in range(options.runs):
        for mode in modes:
            outcome = run_once(mode, options, configured)
            extra = f" (failover_after {options.failover_after})" if mode == "urls" else ""
            print(
                f"run {run + 1} {mode}{extra}: SIGKILL -> first job completed on the new "
                f"Redis {outcome.to_first_completion:.2f} s; all {outcome.jobs} done "
                f"{outcome.to_all_completed:.2f} s after the kill",
                flush=True,
            )


if __name__ == "__main__":
    main()
