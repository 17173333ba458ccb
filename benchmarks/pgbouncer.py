"""`conveyor bench` through a transaction-mode PgBouncer, beside the same run without it.

Starts a private PgBouncer 1.18 (`tests/servers.py`: pool_mode = transaction, on a free
loopback port) in front of the PostgreSQL of DATABASE_URL, then runs, interleaved,
`conveyor bench --drain --json` three ways:

  - direct:   DATABASE_URL is the server (the default set-up);
  - pooled:   DATABASE_URL is the PgBouncer, database.pooler_mode: transaction, no
              direct_url (queuers poll and elect their leader with a lease row);
  - pooled+direct: as pooled, with database.direct_url the server (LISTEN, session lock).

Run: .venv/bin/python benchmarks/pgbouncer.py [--count 20000] [--runs 3] [--pool-size 20]
(as root PgBouncer is started with -u postgres). Prints one line per run and the medians.
The scratch schema and key prefix are `conveyor bench`'s rules (`--schema`, `--prefix`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import PgBouncer  # noqa: E402 - after the path above

MODES = ("direct", "pooled", "pooled+direct")


def bench(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "conveyor", "bench", "--count", str(args.count), "--drain"]
    command += ["--schema", args.schema, "--prefix", args.prefix]
    done = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"bench failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer default_pool_size")
    parser.add_argument("--schema", default="conveyor_bench_pgbouncer", help="scratch schema")
    parser.add_argument("--prefix", default="bench_pgbouncer:", help="scratch Redis key prefix")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    info = psycopg.conninfo.conninfo_to_dict(url)
    host, port = str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))
    dbname = str(info.get("dbname", "postgres"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CONVEYOR_"))}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), base.get("PYTHONPATH", "")])
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-pgbouncer-") as folder,
        PgBouncer(
            host, port, Path(folder), default_pool_size=args.pool_size, max_client_conn=1000
        ) as bouncer,
    ):
        envs = {
            "direct": {**base, "DATABASE_URL": url},
            "pooled": {
                **base,
                "DATABASE_URL": bouncer.url(dbname),
                "DATABASE_POOLER_MODE": "transaction",
            },
            "pooled+direct": {
                **base,
                "DATABASE_URL": bouncer.url(dbname),
                "DATABASE_POOLER_MODE": "transaction",
                "DATABASE_DIRECT_URL": url,
            },
        }
        figures: dict[str, list[float]] = {mode: [] for mode in MODES}
        for run in range(args.runs):
            for mode in MODES:
                result = bench(envs[mode], args)
                rate = float(result["end_to_end_jobs_per_s"])
                figures[mode].append(rate)
                print(
                    f"run {run + 1} {mode:>14}: {rate:,.0f} jobs/s drained, "
                    f"{result['completed']:,}/{args.count:,} completed, "
                    f"enqueue {float(result['enqueue_jobs_per_s']):,.0f} jobs/s",
                    flush=True,
                )
    for mode in MODES:
        print(f"median {mode:>14}: {statistics.median(figures[mode]):,.0f} jobs/s")


if __name__ == "__main__":
    main()
