"""What tracing costs: the per-call price of Conveyor's span wrappers, and single-job enqueue
against PostgreSQL with tracing off and on.

    PYTHONPATH=src .venv/bin/python benchmarks/tracing_overhead.py [--enqueues 2000]

Uses DATABASE_URL (default: the local test server) and a scratch schema it drops at the
end. Modes: `off` (tracing.enabled false: the path taken without the otel extra too),
`no provider` (the extra installed, nothing configured), `sdk` (an SDK provider whose
spans are recorded and then dropped, so the exporter's own cost is not counted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from opentelemetry.sdk.trace import TracerProvider

from conveyor import Conveyor
from conveyor.config import load_settings
from conveyor.store.migrate import migrate
from conveyor.store.work import ClaimedJob, Outcome
from conveyor.tracing import Tracing
from conveyor.vocabulary import LOG_COMPLETED

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def modes() -> dict[str, Tracing]:
    return {
        "off": Tracing(enabled=False),
        "no provider": Tracing(),
        "sdk": Tracing(provider=TracerProvider(shutdown_on_exit=False)),
    }


def per_call(label: str, action: Callable[[], Any], calls: int = 20_000) -> float:
    """Median of five runs, in microseconds per call."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            action()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    median = statistics.median(runs)
    print(f"  {label:<34} {median:8.2f} µs")
    return median


def wrappers() -> None:
    job = ClaimedJob(uuid.uuid4(), "q", "t", 100, {}, 1, 3, 1, None, 0.01, None)
    outcome = Outcome(job.id, 1, LOG_COMPLETED, 0.001)
    print("span wrappers, per call (median of 5 x 20,000):")
    for name, tracing in modes().items():

        def enqueue(tracing: Tracing = tracing) -> None:
            with tracing.enqueue("q", "t") as span:
                span.written([job.id])

        def run(tracing: Tracing = tracing) -> None:
            with tracing.job(job) as span:
                span.finish(outcome)

        per_call(f"{name}: enqueue span", enqueue)
        per_call(f"{name}: wait + run spans", run)


def enqueues(count: int) -> None:
    schema = f"bench_tracing_{uuid.uuid4().hex[:8]}"
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
        results: dict[str, list[float]] = {name: [] for name in modes()}
        tracings = modes()
        for _ in range(5):  # interleaved rounds: the machine's drift hits every mode alike
            for name, tracing in tracings.items():
                app.tracing = tracing
                started = time.perf_counter()
                for _ in range(count // 5):
                    app.enqueue("noop", {"n": 1})
                results[name].append((time.perf_counter() - started) / (count // 5) * 1e6)
        print(f"enqueue of one job, committed (median of 5 rounds x {count // 5}):")
        for name, runs in results.items():
            print(f"  {name:<34} {statistics.median(runs):8.1f} µs")
    finally:
        app.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enqueues", type=int, default=2000)
    args = parser.parse_args()
    wrappers()
    enqueues(args.enqueues)


if __name__ == "__main__":
    main()
