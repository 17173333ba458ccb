"""What the benchmarks that fill a schema with a million jobs share: their command line
and how they summarise timings."""

from __future__ import annotations

import argparse
import os
import statistics


def scale_parser(description: str, runs: int) -> argparse.ArgumentParser:
    """--jobs, --runs, --reuse, --keep and the server URLs (from DATABASE_URL / REDIS_URL)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--reuse", action="store_true", help="keep a filled schema if present")
    parser.add_argument("--keep", action="store_true", help="do not drop the schema afterwards")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    return parser


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was measured, never an interpolation."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def print_timings(results: dict[str, list[float]], heading: str, column: str, width: int) -> None:
    """p50, p95 and max in ms of each labelled list of samples, one line each."""
    print(f"\n{heading}")
    print(f"{column:<{width}} {'p50':>8} {'p95':>8} {'max':>8}")
    for label, samples in results.items():
        print(
            f"{label:<{width}} {statistics.median(samples):8.1f} {percentile(samples, 0.95):8.1f}"
            f" {max(samples):8.1f}"
        )
