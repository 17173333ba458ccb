"""What the queue gauges cost a scrape of /metrics, with 1,000,000 jobs in PostgreSQL.

Every process that serves /metrics reads the queue gauges from PostgreSQL when scraped,
at most every 5 seconds (conveyor.queue_gauges). This fills a scratch schema (the same
fabricated mix as benchmarks/dashboard_render.py: 10 % of the jobs waiting, 300 running)
plus 200 worker rows, then prints p50 / p95 / max of:

  - each statement of a reading, on an open connection;
  - a whole reading: connect, the three statements, close (what a due scrape adds);
  - GET /metrics on a health app in this process, when a reading is due and when the
    last one is still fresh (the figures are cached for 5 s).

Run: .venv/bin/python benchmarks/queue_gauges.py [--jobs 1000000] [--runs 30] [--keep]
It drops and recreates the schema `conveyor_gauge_bench` unless --reuse finds it filled;
like `conveyor bench`, it refuses to drop a schema an earlier scratch run did not create,
or one the configuration names.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psycopg

from conveyor.config import Settings, load_settings
from conveyor.launch import reset_namespace, wipe_namespace
from conveyor.probes import health_app
from conveyor.queue_gauges import QueueGauges
from conveyor.store import Store
from conveyor.store.migrate import migrate

# Rows are fabricated by the tests' factory module, the one place such SQL lives.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.at_scale import print_timings, scale_parser
from tests.factories import add_worker, make_settings
from tests.factories_bulk import fill_at_scale

SCHEMA = "conveyor_gauge_bench"
PREFIX = "gauge_bench:"
QUEUES = [f"queue-{number}" for number in range(20)]
WORKERS = 200


def fill(settings: Settings, jobs: int) -> None:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{SCHEMA}"'.encode())
        fill_at_scale(conn, jobs, QUEUES, running_queue=QUEUES[0])
        for number in range(WORKERS):
            queues = [QUEUES[number % len(QUEUES)], QUEUES[(number + 1) % len(QUEUES)]]
            add_worker(conn, f"bench-{number}", queues)
        conn.execute(b"VACUUM ANALYZE jobs")  # as autovacuum leaves a settled table


def already_filled(settings: Settings, jobs: int) -> bool:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        found = conn.execute(
            b"SELECT to_regclass(%s) IS NOT NULL", (f'"{SCHEMA}".jobs',)
        ).fetchone()
        if not (found and found[0]):
            return False
        conn.execute(f'SET search_path TO "{SCHEMA}"'.encode())
        row = conn.execute(b"SELECT count(*) FROM jobs").fetchone()
        return row is not None and row[0] >= jobs


async def timed(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    for _ in range(3):  # warm the plans and the caches
        await call()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def measure(settings: Settings, runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    dead_after = settings.worker.dead_after
    async with Store.connected(settings, "bench", 5.0) as store:
        results["queue_depths"] = await timed(store.queue_depths, runs)
        results["running_jobs_by_queue"] = await timed(store.running_jobs_by_queue, runs)
        results["live_workers_by_queue"] = await timed(
            lambda: store.live_workers_by_queue(dead_after), runs
        )

    async def reading() -> None:
        gauges = QueueGauges(settings, refresh_seconds=0)
        await gauges.refresh()
        assert gauges.figures is not None, "the reading failed: see the log"

    results["a reading: connect, 3 statements, close"] = await timed(reading, runs)
    transport = httpx.ASGITransport(app=health_app(settings, lambda: None))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def scrape() -> None:
            assert (await client.get("/metrics")).status_code == 200

        results["GET /metrics, figures cached"] = await timed(scrape, runs)

    async def due_scrape() -> None:
        # A new app: its first scrape always reads.
        app = health_app(settings, lambda: None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            assert (await client.get("/metrics")).status_code == 200

    results["GET /metrics, reading due"] = await timed(due_scrape, runs)
    return results


def main() -> None:
    parser = scale_parser(__doc__.split("\n\n")[0], runs=30)
    args = parser.parse_args()
    settings = make_settings(args.database_url, SCHEMA, PREFIX, args.redis_url, fast=False)
    configured = load_settings(None)  # the operator's own namespace, never to be wiped
    if not (args.reuse and already_filled(settings, args.jobs)):
        reset_namespace(settings.database.url, SCHEMA, settings.redis.url, PREFIX, configured)
        migrate(settings.database.url, SCHEMA)
        print(f"filling {SCHEMA} with {args.jobs:,} jobs and {WORKERS} workers")
        fill(settings, args.jobs)
    try:
        results = asyncio.run(measure(settings, args.runs))
    finally:
        if not args.keep:
            wipe_namespace(settings.database.url, SCHEMA, settings.redis.url, PREFIX, configured)
    print_timings(results, f"{args.jobs:,} jobs, {args.runs} runs each (ms)", "what", 44)


if __name__ == "__main__":
    main()
