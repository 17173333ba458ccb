"""What one metrics rollup pass costs with 1,000,000 jobs in PostgreSQL.

Fills a scratch schema with a million jobs (and one job_logs row per attempt) created
evenly over the last two hours, 8,333 a minute (12 M a day, the rate the issue names),
in creation order (the newest 20 of those minutes a little in the future, so the
passes timed after the fill find full minutes), then times `MetricsRollup.run_once()`
(the minute statement and the hour statement, in one transaction) in two situations:

  - steady state: one minute to roll up (the watermark one minute behind);
  - catch-up after a leader gap: the full 60 minutes one pass may write;

and prints EXPLAIN (ANALYZE, BUFFERS) of the steady-state minute statement.

Run: .venv/bin/python benchmarks/rollup_cost.py [--jobs 1000000] [--minutes 120] [--runs 10]
It drops and recreates the schema `conveyor_rollup_bench` unless --reuse finds it filled;
like `conveyor bench`, it refuses to drop a schema an earlier scratch run did not create,
or the one the configuration names.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import psycopg

from conveyor.config import Settings, load_settings
from conveyor.launch import reset_namespace, wipe_namespace
from conveyor.rollup import MetricsRollup
from conveyor.store import Store
from conveyor.store.migrate import migrate

# Rows are fabricated by the tests' factory module, the one place such SQL lives.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.at_scale import scale_parser
from tests.factories import make_settings
from tests.factories_bulk import fill_recent_minutes

SCHEMA = "conveyor_rollup_bench"
PREFIX = "rollup_bench:"
QUEUES = ["email-sending", "billing", "analytics", "webhooks", "reports"]
# Minutes of the fill that lie ahead of its end, so the timed passes (run after the fill)
# still find a full minute of attempts to roll up.
AHEAD = 20


def connect(settings: Settings) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(settings.database.url, autocommit=True)
    conn.execute(f'SET search_path TO "{SCHEMA}"'.encode())
    return conn


def behind(settings: Settings, minutes: int | None, grace: float) -> None:
    """Put the watermark `minutes` behind the newest complete minute (None: no watermark,
    so a pass catches up as far as it may)."""
    with connect(settings) as conn:
        conn.execute(b"DELETE FROM metrics_rollup_state")
        if minutes is not None:
            conn.execute(
                b"INSERT INTO metrics_rollup_state (rolled_through) VALUES"
                b" (date_trunc('minute', now() - %s * interval '1 second')"
                b" - %s * interval '1 minute')",
                (grace, minutes),
            )


async def time_passes(settings: Settings, runs: int, minutes: int | None) -> list[float]:
    store = await Store.open(settings, "bench", 2)
    try:
        rollup = MetricsRollup(store, settings)
        samples = []
        for _ in range(runs + 2):  # two warm-ups: pool, plans, caches
            behind(settings, minutes, rollup.grace)
            began = time.perf_counter()
            rolled = await rollup.run_once()
            samples.append((time.perf_counter() - began) * 1000)
            assert rolled is not None and rolled.rows_written > 0, "nothing was rolled up"
        return samples[2:]
    finally:
        await store.close()


def explain(settings: Settings, grace: float) -> str:
    """The plan of the minute statement, run for real and rolled back."""
    statement = Store(None, SCHEMA).queries["roll_up_minutes"]
    behind(settings, 1, grace)
    with (
        connect(settings) as conn,
        conn.transaction(force_rollback=True),
        psycopg.ClientCursor(conn) as cur,
    ):
        cur.execute(
            b"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement,
            {"grace": grace, "catch_up": 60},
        )
        return "\n".join(str(row[0]) for row in cur.fetchall())


def main() -> None:
    parser = scale_parser(__doc__.split("\n\n")[0], runs=10)
    parser.add_argument("--minutes", type=int, default=120)
    args = parser.parse_args()
    settings = make_settings(args.database_url, SCHEMA, PREFIX, args.redis_url, fast=False)
    configured = load_settings(None)  # the operator's own namespace, never to be wiped
    filled = False
    if args.reuse:
        with psycopg.connect(settings.database.url, autocommit=True) as conn:
            row = conn.execute(b"SELECT to_regclass(%s)", (f'"{SCHEMA}".jobs',)).fetchone()
            filled = bool(row and row[0])
    if not filled:
        reset_namespace(settings.database.url, SCHEMA, settings.redis.url, PREFIX, configured)
        migrate(settings.database.url, SCHEMA)
        print(f"filling {SCHEMA} with {args.jobs:,} jobs over {args.minutes} minutes")
        with connect(settings) as conn:
            fill_recent_minutes(conn, args.jobs, args.minutes, QUEUES, ahead=AHEAD)
    grace = settings.liveness.database_deadline
    try:
        steady = asyncio.run(time_passes(settings, args.runs, 1))
        catch_up = asyncio.run(time_passes(settings, max(3, args.runs // 3), None))
        plan = explain(settings, grace)
        with connect(settings) as conn:
            sizes = conn.execute(
                b"SELECT pg_size_pretty(pg_relation_size('jobs_created_brin')),"
                b" pg_size_pretty(pg_relation_size('jobs')), (SELECT count(*) FROM jobs),"
                b" (SELECT count(*) FROM job_logs)"
            ).fetchone()
    finally:
        if not args.keep:
            wipe_namespace(settings.database.url, SCHEMA, settings.redis.url, PREFIX, configured)
    assert sizes is not None
    print(f"\n{sizes[2]:,} jobs ({sizes[1]}), {sizes[3]:,} job_logs rows; BRIN index {sizes[0]}")
    print(f"{'rollup pass (ms)':<44} {'p50':>8} {'max':>8}")
    for label, samples in (
        ("steady state: 1 minute (~8,300 attempts)", steady),
        ("catch-up: 60 minutes (~500,000 attempts)", catch_up),
    ):
        print(f"{label:<44} {statistics.median(samples):8.1f} {max(samples):8.1f}")
    print("\nEXPLAIN ANALYZE of roll_up_minutes, one minute:\n" + plan)


if __name__ == "__main__":
    main()
