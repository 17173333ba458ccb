"""What a global rate limit costs when it does not bind: the same drain of no-op jobs with
no limit, and with a per-queue rate limit far above the drain rate (every job then goes
through the limited dispatch, and every claim records its start).

    PYTHONPATH=src .venv/bin/python benchmarks/limits_overhead.py [--count 50000] [--rounds 3]
    PYTHONPATH=src .venv/bin/python benchmarks/limits_overhead.py --statements

The drain uses real processes (`conveyor bench --drain`: one queuer, two worker
processes) on a scratch schema and key prefix, with DATABASE_URL and REDIS_URL (default:
the local test servers). Rounds alternate the two cases, so the machine's drift hits both
alike; the medians are compared. `--statements` times the two dispatch paths and the claim
alone, in this process, per job (less noisy on a busy machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import psycopg

from conveyor.bench.run import BenchOptions, run_bench
from conveyor.config import Settings, load_settings
from conveyor.limited_dispatch import LimitedDispatch
from conveyor.limits import Limit, Rate
from conveyor.store import Store
from conveyor.store.migrate import migrate
from conveyor.store.work import Outcome
from conveyor.vocabulary import LIMIT_FROM_ADMIN, LOG_COMPLETED

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# name -> (queue rate limit, concurrency per key over 1,000 keys)
CASES: dict[str, tuple[str | None, int | None]] = {
    "no limit": (None, None),
    "rate limit 1000000/s": ("1000000/s", None),
    "5 at once per key, 1,000 keys": (None, 5),
}


async def statements(jobs: int = 20_000, batch: int = 500) -> None:
    schema = f"bench_limits_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        env={},
        overrides={"database.url": DATABASE_URL, "database.schema": schema,
                   "queuer.batch_size": batch},
    )  # fmt: skip
    migrate(DATABASE_URL, schema)
    store = await Store.open(settings, "bench", 2)
    try:
        await store.write_limits([Limit("queue:limited", Rate(10**6, 1.0), None)], LIMIT_FROM_ADMIN)
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"'.encode())
            for queue in ("plain", "limited"):
                conn.execute(b"INSERT INTO job_queues (name) VALUES (%s)", (queue,))
                conn.execute(
                    b"INSERT INTO jobs (id, queue_name, task, payload)"
                    b" SELECT gen_random_uuid(), %s, 't', '{}' FROM generate_series(1, %s)",
                    (queue, jobs),
                )
            conn.execute(b"ANALYZE jobs")
        await _time_paths(settings, store, jobs, batch)
    finally:
        await store.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


async def _time_paths(settings: Settings, store: Store, jobs: int, batch: int) -> None:
    """Each pass dispatches a batch on each path, then claims and completes it (the claims
    timed, the completions not), so the in-flight set stays small, as with live workers."""
    limited = LimitedDispatch(settings, store)
    paths = {
        "plain": lambda: store.dispatch_ready(settings.queuer.buffer_per_queue, batch),
        "limited": limited.dispatch,
    }
    dispatch = dict.fromkeys(paths, 0.0)
    claim = dict.fromkeys(paths, 0.0)
    for _ in range(jobs // batch):  # alternate, so drift hits both alike
        for name, path in paths.items():
            began = time.perf_counter()
            ids = [str(job.id) for job in await path()]
            dispatch[name] += time.perf_counter() - began
            for start in range(0, len(ids), 100):
                began = time.perf_counter()
                claimed = await store.claim_jobs(ids[start : start + 100], "bench", 30.0)
                claim[name] += time.perf_counter() - began
                await store.record_outcomes(
                    [Outcome(job.id, job.token, LOG_COMPLETED, 0.0) for job in claimed]
                )
    print(f"per job, {jobs:,} jobs per path (dispatch in batches of {batch}, claims of 100):")
    for name in paths:
        print(f"  dispatch, {name:<8} {dispatch[name] / jobs * 1e6:8.1f} µs")
        print(f"  claim, {name:<11} {claim[name] / jobs * 1e6:8.1f} µs")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statements", action="store_true")
    args = parser.parse_args()
    if args.statements:
        await statements()
        return
    base = {"database.url": DATABASE_URL, "redis.url": REDIS_URL}
    configured = load_settings(env={}, overrides=base)
    settings = load_settings(
        env={},
        overrides={
            **base,
            "database.schema": "conveyor_bench_limits",
            "redis.key_prefix": "bench_limits:",
            "log.level": "warning",
        },
    )
    rates: dict[str, list[float]] = {name: [] for name in CASES}
    for round_number in range(args.rounds):
        for name, (limit, per_key) in CASES.items():
            options = BenchOptions(
                count=args.count, drain=True, rate_limit=limit, key_concurrency=per_key
            )
            result = await run_bench(settings, options, configured=configured)
            rates[name].append(result.end_to_end_jobs_per_s)
            print(f"round {round_number + 1}, {name}: {result.end_to_end_jobs_per_s:,.0f} jobs/s")
    plain = statistics.median(rates["no limit"])
    print(f"\ndrain of {args.count:,} no-op jobs, median of {args.rounds} rounds:")
    for name, runs in rates.items():
        median = statistics.median(runs)
        print(f"  {name:<24} {median:10,.0f} jobs/s  ({median / plain - 1:+.1%})")


if __name__ == "__main__":
    asyncio.run(main())
