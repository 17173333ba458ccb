"""Shared driver for the peer adapters.

Runs inside a peer's own virtualenv, so it may only rely on the standard library and
redis-py (installed in every peer venv).  An adapter module defines:

    PEER, PACKAGES, DURABLE, DURABLE_NOTE, SETTINGS
    enqueue_bulk(n)        -- sync or async; enqueue n no-op jobs
    enqueue_one(ts)        -- sync or async; enqueue one job carrying ts=time.time()
    worker_commands()      -- argv lists; each started as its own process group
    connect() / close()    -- optional, sync or async (producer-side clients)
    setup() / teardown()   -- optional, sync (e.g. create / drop a database)

Tasks count themselves with ``record_sync`` / ``record_async`` (see ``_recorder.py``,
re-exported here together with the connection settings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import inspect
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from _recorder import BROKER_DB as BROKER_DB
from _recorder import BROKER_PORT as BROKER_PORT
from _recorder import COUNTER_DB as COUNTER_DB
from _recorder import COUNTER_PORT as COUNTER_PORT
from _recorder import DONE_KEY as DONE_KEY
from _recorder import HOST as HOST
from _recorder import LAT_KEY as LAT_KEY
from _recorder import PG_DBNAME as PG_DBNAME
from _recorder import PG_DSN as PG_DSN
from _recorder import broker_url as broker_url
from _recorder import record_async as record_async
from _recorder import record_sync as record_sync

POLL_S = 0.005


async def _maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def bin_path(name: str) -> str:
    """A console script of the current (peer) virtualenv."""
    return str(Path(sys.executable).parent / name)


def flush_own_dbs() -> None:
    """FLUSHDB only the benchmark's own Redis databases (never db 0)."""
    targets = {(BROKER_PORT, BROKER_DB), (COUNTER_PORT, COUNTER_DB)}
    for port, db in targets:
        if db == 0:
            raise SystemExit("refusing to flush Redis db 0")
        redis.Redis(host=HOST, port=port, db=db).flushdb()


class Workers:
    """Worker processes, each in its own process group, killed by group id."""

    def __init__(self, commands: list[list[str]], pidfile: str | None, name: str) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        log_dir = Path(os.environ.get("BENCH_LOG_DIR", "."))
        log_dir.mkdir(parents=True, exist_ok=True)
        adapters = str(Path(__file__).resolve().parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [adapters, env.get("PYTHONPATH")]))
        for i, argv in enumerate(commands):
            with open(log_dir / f"{name}-worker{i}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        cwd=adapters,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        if pidfile:
            Path(pidfile).write_text("\n".join(str(p.pid) for p in self.procs))

    def stop(self, grace: float = 10.0) -> None:
        for proc in self.procs:
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:  # the group may still hold children: always sweep it
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_count(counter: redis.Redis, target: int, timeout: float) -> dict[str, Any]:
    """Poll the completion counter until it reaches target (or timeout)."""
    start = time.perf_counter()
    first_t = first_n = None
    done = 0
    while True:
        done = int(counter.get(DONE_KEY) or 0)
        now = time.perf_counter()
        if done and first_t is None:
            first_t, first_n = now, done
        if done >= target or now - start > timeout:
            break
        time.sleep(POLL_S)
    end = time.perf_counter()
    res: dict[str, Any] = {
        "target": target,
        "done": done,
        "timed_out": done < target,
        "wall_s": end - start,
    }
    if first_t is not None and first_n is not None and end > first_t and done > first_n:
        res["steady_s"] = end - first_t
        res["jobs_per_s"] = (done - first_n) / (end - first_t)
    else:
        res["jobs_per_s"] = done / (end - start) if end > start else 0.0
    res["wall_jobs_per_s"] = done / res["wall_s"] if res["wall_s"] else 0.0
    return res


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        idx = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[idx] * 1000.0

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ordered[-1] * 1000.0}


async def _offer(mod: Any, rate: float, seconds: float) -> dict[str, Any]:
    total = max(1, int(rate * seconds))
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await _maybe(mod.enqueue_one(time.time()))
    elapsed = time.perf_counter() - start
    return {
        "offered": total,
        "rate_target": rate,
        "offer_s": elapsed,
        "rate_achieved": total / elapsed if elapsed else 0.0,
    }


def versions(packages: list[str]) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "?"
    return out


async def _flow(mod: Any, args: argparse.Namespace) -> dict[str, Any]:
    counter = redis.Redis(host=HOST, port=COUNTER_PORT, db=COUNTER_DB)
    result: dict[str, Any] = {"mode": args.mode}
    if args.mode in ("bench", "enqueue"):
        flush_own_dbs()
        if hasattr(mod, "setup"):
            mod.setup()
    if args.mode == "cleanup":
        if hasattr(mod, "teardown"):
            mod.teardown()
        flush_own_dbs()
        return result
    if hasattr(mod, "connect"):
        await _maybe(mod.connect())
    workers = None
    try:
        if args.mode in ("bench", "enqueue"):
            t0 = time.perf_counter()
            await _maybe(mod.enqueue_bulk(args.count))
            took = time.perf_counter() - t0
            result["enqueue"] = {
                "count": args.count,
                "seconds": took,
                "jobs_per_s": args.count / took if took else 0.0,
            }
        if args.mode in ("bench", "drain"):
            workers = Workers(mod.worker_commands(), args.pidfile, mod.PEER)
            result["drain"] = wait_count(counter, args.count, args.timeout)
        if args.mode == "bench":
            counter.delete(DONE_KEY, LAT_KEY)
            offer = await _offer(mod, args.rate, args.latency_seconds)
            waited = wait_count(counter, offer["offered"], args.timeout)
            lat = [float(x) for x in counter.lrange(LAT_KEY, 0, -1)]
            offer.update({"done": waited["done"], "timed_out": waited["timed_out"]})
            offer.update(percentiles(lat))
            result["latency"] = offer
    finally:
        if workers is not None:
            workers.stop()
        if hasattr(mod, "close"):
            await _maybe(mod.close())
    if args.mode in ("bench", "drain"):
        if hasattr(mod, "teardown"):
            mod.teardown()
        flush_own_dbs()
    return result


def main(module_name: str) -> None:
    parser = argparse.ArgumentParser(description=f"{module_name} benchmark adapter")
    parser.add_argument("--mode", choices=["bench", "enqueue", "drain", "cleanup"], default="bench")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="max seconds to wait for jobs to complete, per phase",
    )
    parser.add_argument("--pidfile", default=None, help="write worker pids (= pgids) here")
    args = parser.parse_args()
    # SIGTERM (harness timeout) must unwind through the finally that stops the workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mod = importlib.import_module(module_name)
    result: dict[str, Any] = {
        "peer": mod.PEER,
        "versions": versions(mod.PACKAGES),
        "durable": mod.DURABLE,
        "durable_note": mod.DURABLE_NOTE,
        "settings": mod.SETTINGS,
    }
    try:
        result.update(asyncio.run(_flow(mod, args)))
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001 - any peer error is reported, not raised
        result.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    print("BENCH_RESULT " + json.dumps(result), flush=True)
