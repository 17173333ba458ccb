"""What workflows cost at enqueue: plain jobs (which must pay nothing: run this on the
commit before workflows and after, and compare), a job with one parent, and a chord.

    PYTHONPATH=src .venv/bin/python benchmarks/workflow_enqueue.py [--enqueues 2000] [--batches 25]

Uses DATABASE_URL (default: the local test server) and a scratch schema it drops at the
end. Rounds are interleaved, so the machine's drift hits every case alike. On a commit
without workflows only the plain cases run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg

from conveyor import Conveyor
from conveyor.config import load_settings
from conveyor.store.migrate import migrate

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROUNDS = 5
BATCH = 1000
CHORD = 100


def cases(app: Conveyor) -> dict[str, tuple[Callable[[], object], int]]:
    """name: (one operation, jobs it writes)."""
    found: dict[str, tuple[Callable[[], object], int]] = {
        "plain enqueue, one job": (lambda: app.enqueue("noop", {"n": 1}), 1),
        f"plain enqueue_many, {BATCH} jobs": (
            lambda: app.enqueue_many("noop", [{"n": 1}] * BATCH),
            BATCH,
        ),
    }
    if hasattr(app, "chord"):
        parent = app.enqueue("noop", {"n": 0})
        noop = app.tasks["noop"]
        found["enqueue with depends_on, one parent"] = (
            lambda: app.enqueue("noop", {"n": 1}, depends_on=[parent]),
            1,
        )
        found[f"chord of {CHORD} and a callback"] = (
            lambda: app.chord([noop.s({"n": n}) for n in range(CHORD)], noop.s()),  # type: ignore[attr-defined]
            CHORD + 1,
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--enqueues", type=int, default=2000, help="one-job operations per case")
    parser.add_argument("--batches", type=int, default=25, help="many-job operations per case")
    args = parser.parse_args()
    schema = f"bench_workflow_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        None,
        env={},
        overrides={
            "database.url": DATABASE_URL,
            "database.schema": schema,
            "database.pool_size": 2,
        },
    )
    migrate(settings.database.url, schema)
    app = Conveyor(settings)

    @app.task(name="noop")
    def noop(_: object) -> None:
        return None

    try:
        work = cases(app)
        timings: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(ROUNDS):
            for name, (operation, jobs) in work.items():
                count = max(1, (args.enqueues if jobs == 1 else args.batches) // ROUNDS)
                started = time.perf_counter()
                for _ in range(count):
                    operation()
                timings[name].append((time.perf_counter() - started) / (count * jobs) * 1e6)
        print(f"per job written, median of {ROUNDS} rounds:")
        for name, runs in timings.items():
            print(f"  {name:<40} {statistics.median(runs):8.1f} µs")
    finally:
        app.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


if __name__ == "__main__":
    main()
