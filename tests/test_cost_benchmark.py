"""benchmarks/cost.py on a tiny drain: every figure it promises is there and positive.
The values are the benchmark's business, not the test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import ADMIN_URL
from tests.factories import REDIS_URL, new_namespace

ROOT = Path(__file__).resolve().parent.parent
COUNT = 200


def test_cost_benchmark_reports_every_figure_per_window() -> None:
    schema, prefix = new_namespace()
    database = f"cost_{schema}"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "cost.py"), "--count", str(COUNT),
        "--processes", "1", "--concurrency", "50", "--json", "--database-url", ADMIN_URL,
        "--redis-url", REDIS_URL, "--database-name", database, "--prefix", prefix,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    (figures,) = report["rounds"]
    for window in ("enqueue", "drain", "total"):
        for key in ("wal_bytes", "heap_row_writes", "heap_inserts", "index_entries", "commits"):
            assert figures[window][key] > 0, (window, key)
    assert figures["drain"]["heap_updates"] > 0
    assert figures["total"]["heap_row_writes"] == (
        figures["total"]["heap_inserts"]
        + figures["total"]["heap_updates"]
        + figures["total"]["heap_deletes"]
    )
    # CPU is read in clock ticks: a component of a 200-job run may round to nothing, but
    # every one is reported and the run as a whole used some.
    for window, components in {
        "enqueue": ("client", "postgres backends", "postgres background"),
        "drain": ("queuer", "workers", "postgres backends", "postgres background"),
    }.items():
        cpu = [figures[window][f"cpu:{component}"] for component in components]
        assert all(seconds >= 0 for seconds in cpu), (window, cpu)
    assert sum(v for k, v in figures["total"].items() if k.startswith("cpu:")) > 0
    # The detail behind the totals: the jobs table's rows and some index's entries.
    assert figures["total"]["table:jobs"] > 0
    assert any(k.startswith("index:") and v > 0 for k, v in figures["total"].items())
    assert set(report["summary"]) == {"enqueue", "drain", "total"}
    assert report["summary"]["total"]["wal_bytes"]["median"] > 0
    assert report["method"]["index_entries"]
    # The scratch database is dropped at the end.
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        left = conn.execute(b"SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchall()
    assert left == []
