"""What dedup modes cost at enqueue: one committed job (plain, and with each mode), and a
batch of 1,000 with and without keys.

    PYTHONPATH=src .venv/bin/python benchmarks/dedup_enqueue.py [--enqueues 2000]

Uses DATABASE_URL (default: the local test server) and a scratch schema it drops at the
end. Rounds are interleaved, so the machine's drift hits every mode alike.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from conveyor import Conveyor, Debounce, Throttle, Unique
from conveyor.config import load_settings
from conveyor.dedup import Dedup
from conveyor.store.migrate import migrate

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROUNDS = 5


def single(app: Conveyor, count: int) -> None:
    serial = itertools.count()
    cases: dict[str, Callable[[], Dedup | None]] = {
        "plain enqueue": lambda: None,
        "Unique, a new key each time": lambda: Unique(f"u{next(serial)}"),
        "Unique, the same key (duplicate)": lambda: Unique("same"),
        "Debounce, the same key": lambda: Debounce("debounced", delay=3600),
        "Throttle, the same key": lambda: Throttle("throttled", window=3600),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, mode in cases.items():
            started = time.perf_counter()
            for _ in range(count // ROUNDS):
                app.enqueue("noop", {"n": 1}, dedup=mode())
            results[name].append((time.perf_counter() - started) / (count // ROUNDS) * 1e6)
    print(f"enqueue of one job, committed (median of {ROUNDS} rounds x {count // ROUNDS}):")
    for name, runs in results.items():
        print(f"  {name:<36} {statistics.median(runs):8.1f} µs")


def batches(app: Conveyor, size: int = 1000) -> None:
    serial = itertools.count()
    payloads = [{"n": n} for n in range(size)]
    cases: dict[str, Callable[[], list[Dedup | None] | None]] = {
        "no keys": lambda: None,
        "a new Unique key per job": lambda: [Unique(f"b{next(serial)}") for _ in range(size)],
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, modes in cases.items():
            started = time.perf_counter()
            app.enqueue_many("noop", payloads, dedup=modes())
            results[name].append((time.perf_counter() - started) * 1e3)
    print(f"enqueue_many of {size} jobs (median of {ROUNDS}):")
    for name, runs in results.items():
        print(f"  {name:<36} {statistics.median(runs):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enqueues", type=int, default=2000)
    args = parser.parse_args()
    schema = f"bench_dedup_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        env={}, overrides={"database.url": DATABASE_URL, "database.schema": schema}
    )
    migrate(DATABASE_URL, schema)
    app = Conveyor(settings)

    @app.task(name="noop", queue="bench")
    def noop(payload: Any) -> None:
        return None

    try:
        app.enqueue("noop", {})  # open the pool
        single(app, args.enqueues)
        batches(app)
    finally:
        app.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


if __name__ == "__main__":
    main()
