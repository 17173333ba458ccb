"""What a global rate limit costs when it does not bind: the same drain of no-op jobs with
no limit, and with a per-queue rate limit far above the drain rate (every job then goes
through the limited dispatch, and every claim records its start).

    PYTHONPATH=src .venv/bin/python benchmarks/limits_overhead.py [--count 50000] [--rounds 3]

Real processes (`conveyor bench --drain`: one queuer, two worker processes) on a scratch
schema and key prefix, with DATABASE_URL and REDIS_URL (default: the local test servers).
Rounds alternate the two cases, so the machine's drift hits both alike; the medians are
compared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from conveyor.bench.run import BenchOptions, run_bench
from conveyor.config import load_settings

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CASES = {"no limit": None, "rate limit 1000000/s": "1000000/s"}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
        for name, limit in CASES.items():
            options = BenchOptions(count=args.count, drain=True, rate_limit=limit)
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
