"""How fast `conveyor worker --autoscale MIN:MAX` reacts to a burst, and what it buys.

For each mode, on a scratch schema (`conveyor_bench_autoscale`, Redis keys under
`bench_autoscale:`): a queuer and a worker supervisor start and sit idle, then a burst of
--count jobs (each waits --sleep-ms, an I/O-bound handler) is enqueued at once. Measured
from the start of the burst:

  - autoscale: seconds until the supervisor runs MAX processes (its /metrics
    `worker_processes`), and until the backlog is drained;
  - fixed:     the backlog's drain time with --processes MIN.

Run: PYTHONPATH=src .venv/bin/python benchmarks/autoscale.py [--count 50000]
     [--bounds 1:4] [--sleep-ms 20] [--concurrency 10] [--check-interval 5s]
     [--up-cooldown 30s] [--step-up 1] [--modes autoscale,fixed]
The autoscale rules are the product's defaults unless given here, except that the CPU
and memory rules are off unless --host-signals (the benchmark loads its own machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.autoscale_app import QUEUE, TASK  # noqa: E402 - after the path above

from conveyor.app import Conveyor  # noqa: E402
from conveyor.config import Settings, load_settings  # noqa: E402
from conveyor.launch import Launcher, reset_namespace, settings_env, wipe_namespace  # noqa: E402
from conveyor.store.migrate import migrate  # noqa: E402
from conveyor.vocabulary import COMPLETED, DEAD  # noqa: E402

SCHEMA, PREFIX = "conveyor_bench_autoscale", "bench_autoscale:"
BATCH = 5000
# The machine running the benchmark is busy with the benchmark itself (and may be shared):
# unless --host-signals, CPU and memory marks are put out of reach so that what is
# measured is the reaction to the burst's depth.
DEPTH_ONLY = {
    "AUTOSCALE__CPU_HIGH": "1",
    "AUTOSCALE__CPU_LOW": "0.999",
    "AUTOSCALE__MEM_HIGH": "1",
    "AUTOSCALE__MEM_LOW": "0.999",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def finished(settings: Settings) -> int:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.jobs WHERE status = ANY(%s)")
        row = conn.execute(query.format(sql.Identifier(SCHEMA)), ([COMPLETED, DEAD],)).fetchone()
    return int(row[0]) if row else 0


def processes(port: int) -> int | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("worker_processes "):
            return int(float(line.split()[1]))
    return None


async def enqueue(app: Conveyor, args: argparse.Namespace) -> float:
    """The burst, in batches; returns when the last batch committed (monotonic clock)."""
    for sent in range(0, args.count, BATCH):
        size = min(BATCH, args.count - sent)
        await app.aenqueue_many(TASK, [{"ms": args.sleep_ms}] * size)
    return time.monotonic()


async def run(mode: str, args: argparse.Namespace, configured: Settings) -> dict[str, Any]:
    settings = load_settings(
        overrides={"database.schema": SCHEMA, "redis.key_prefix": PREFIX, "log.level": "info"}
    )
    db, rd = settings.database, settings.redis
    reset_namespace(db.url, SCHEMA, rd.url, PREFIX, configured)
    migrate(db.url, SCHEMA)
    minimum, maximum = (int(part) for part in args.bounds.split(":"))
    port = free_port()
    sizing = ["--autoscale", args.bounds] if mode == "autoscale" else ["--processes", str(minimum)]
    rules = {} if args.host_signals else DEPTH_ONLY
    rules = {
        **rules,
        "AUTOSCALE__CHECK_INTERVAL": args.check_interval,
        "AUTOSCALE__SCALE_UP_COOLDOWN": args.up_cooldown,
        "AUTOSCALE__STEP_UP": str(args.step_up),
    }
    app = Conveyor(settings)
    app.task(name=TASK, queue=QUEUE, max_attempts=1)(lambda payload: None)
    result: dict[str, Any] = {"mode": mode, "count": args.count, "bounds": args.bounds}
    with tempfile.TemporaryDirectory(prefix="conveyor-autoscale-bench-") as logs:
        launcher = Launcher(settings_env(settings, ("log.level",)), Path(logs), cwd=ROOT)
        try:
            launcher.queuer()
            launcher.conveyor(
                "worker", "worker", "--app", "benchmarks.autoscale_app:app", "--queues", QUEUE,
                "--concurrency", str(args.concurrency), "--health-port", str(port), *sizing,
                **rules,
            )  # fmt: skip
            while (processes(port) or 0) < minimum:
                if launcher.dead():
                    raise SystemExit(f"a process died:\n{launcher.logs()[-3000:]}")
                await asyncio.sleep(0.2)
            started = time.monotonic()
            # The burst is enqueued while the process count is watched: a supervisor may
            # react before the last batch is in.
            burst = asyncio.create_task(enqueue(app, args))
            peak = minimum
            while not burst.done() or finished(settings) < args.count:
                if launcher.dead():
                    raise SystemExit(f"a process died:\n{launcher.logs()[-3000:]}")
                now = processes(port) or peak
                if now > peak:
                    peak = now
                    result[f"seconds_to_{now}_processes"] = round(time.monotonic() - started, 1)
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"{mode}: not drained in time")
                await asyncio.sleep(0.25)
            result["enqueue_seconds"] = round(burst.result() - started, 1)
            result["drain_seconds"] = round(time.monotonic() - started, 1)
            result["peak_processes"] = peak
            if mode == "autoscale":
                result["seconds_to_max"] = result.get(f"seconds_to_{maximum}_processes")
        finally:
            launcher.stop()
            await app.aclose()
            wipe_namespace(db.url, SCHEMA, rd.url, PREFIX, configured)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--bounds", default="1:4", help="MIN:MAX worker processes")
    parser.add_argument("--sleep-ms", type=float, default=20.0, help="each job's wait")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per process")
    parser.add_argument("--check-interval", default="5s", help="autoscale.check_interval")
    parser.add_argument("--up-cooldown", default="30s", help="autoscale.scale_up_cooldown")
    parser.add_argument("--step-up", type=int, default=1, help="autoscale.step_up")
    parser.add_argument("--modes", default="autoscale,fixed")
    parser.add_argument(
        "--host-signals", action="store_true", help="keep the CPU and memory rules (default: off)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    configured = load_settings()
    for mode in args.modes.split(","):
        print(json.dumps(asyncio.run(run(mode, args, configured))), flush=True)


if __name__ == "__main__":
    main()
