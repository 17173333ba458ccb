"""Procrastinate adapter: PostgreSQL only, ``batch_defer_async``, 2 x ``procrastinate worker``.

Jobs live in PostgreSQL (the benchmark creates and drops its own database).  Each of the
2 worker processes runs ``--concurrency`` async jobs at once and is woken by
LISTEN/NOTIFY; finished jobs are kept (``--delete-jobs never``, the default).
"""

from __future__ import annotations

import os

import _common
import psycopg
from procrastinate import App, PsycopgConnector
from procrastinate.schema import SchemaManager

PEER = "procrastinate"
PACKAGES = ["procrastinate", "psycopg", "psycopg-pool", "redis"]
DURABLE = True
DURABLE_NOTE = "jobs are rows in PostgreSQL; Redis is not involved"
CHUNK = 1000
CONCURRENCY = os.environ.get("BENCH_PROCRASTINATE_CONCURRENCY", "30")
SETTINGS = (
    f"2 x `procrastinate --log-level warning worker --concurrency {CONCURRENCY}` "
    "(LISTEN/NOTIFY); enqueue: "
    f"Task.batch_defer_async in chunks of {CHUNK}"
)
DSN = f"{_common.PG_DSN} dbname={_common.PG_DBNAME}"
if not _common.PG_DBNAME.startswith("bench_peer_"):
    raise SystemExit("benchmark databases must be named bench_peer_*")

app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="noop", queue="bench")
async def noop(ts: float = 0.0) -> None:
    await _common.record_async(ts)


def _admin(sql: str) -> None:
    with psycopg.connect(f"{_common.PG_DSN} dbname=postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def setup() -> None:
    teardown()
    _admin(f'CREATE DATABASE "{_common.PG_DBNAME}"')
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(SchemaManager.get_schema())


def teardown() -> None:
    _admin(f'DROP DATABASE IF EXISTS "{_common.PG_DBNAME}" WITH (FORCE)')


async def connect() -> None:
    await app.open_async()


async def close() -> None:
    await app.close_async()


async def enqueue_bulk(n: int) -> None:
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        await noop.batch_defer_async(*({} for _ in range(size)))


async def enqueue_one(ts: float) -> None:
    await noop.defer_async(ts=ts)


def worker_commands() -> list[list[str]]:
    return [
        [
            _common.bin_path("procrastinate"),
            "--log-level",
            "warning",
            "--app",
            "procrastinate_peer.app",
            "worker",
            "--queues",
            "bench",
            "--concurrency",
            CONCURRENCY,
            "--name",
            f"bench{i}",
        ]
        for i in range(2)
    ]
