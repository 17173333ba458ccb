"""Conveyor at scale: 1,000,000 jobs waiting in PostgreSQL.

Measures, on a scratch schema:
  - enqueue rate (bulk, 1,000 per statement) on an empty table and with 1M waiting;
  - the cost of one dispatch pass with 1M ready jobs, and with 1M scheduled for later;
  - Redis memory while a queuer runs against the backlog (bounded by the buffer);
  - `admin stats()` and `admin health()` latency;
  - retention pruning throughput.

Run: .venv/bin/python benchmarks/scale.py [--jobs 1000000] [--json out.json]
It drops and recreates the schema `conveyor_scale` and Redis keys under `scale:`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import psycopg
import redis

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import load_settings
from conveyor.launch import wipe_namespace
from conveyor.queuer import Queuer
from conveyor.store.migrate import migrate

BATCH = 1000


def timed(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def enqueue_rate(app: Conveyor, count: int, delay: float | None = None) -> float:
    started = time.perf_counter()
    for offset in range(0, count, BATCH):
        app.enqueue_many("scale.noop", [{"n": offset + i} for i in range(BATCH)], delay=delay)
    return count / (time.perf_counter() - started)


async def admin_latency(settings: Any, runs: int = 15) -> dict[str, Any]:
    async with Admin(settings) as admin:
        await admin.stats()  # warm the pool and the caches
        stats, health = [], []
        for _ in range(runs):
            began = time.perf_counter()
            await admin.stats()
            stats.append(time.perf_counter() - began)
            began = time.perf_counter()
            await admin.health()
            health.append(time.perf_counter() - began)
    return {"stats": timed(stats), "health": timed(health)}


async def dispatch_pass(settings: Any, runs: int = 5) -> dict[str, float]:
    """One dispatch pass against the backlog, undone after each run so every run sees it."""
    queuer = await Queuer.open(settings, maintenance=False)
    samples = []
    try:
        await queuer.sync_epoch()
        for _ in range(runs):
            began = time.perf_counter()
            await queuer.dispatch_once()
            samples.append(time.perf_counter() - began)
            await queuer.rebuild_redis()
            client = redis.Redis.from_url(settings.redis.url)
            for key in client.scan_iter(match=f"{settings.redis.key_prefix}queue:*"):
                client.delete(key)
            client.close()
    finally:
        await queuer.close()
    return timed(samples)


async def redis_memory_under_queuer(settings: Any, seconds: float = 5.0) -> dict[str, float]:
    client = redis.Redis.from_url(settings.redis.url)
    before = int(client.info("memory")["used_memory"])
    queuer = await Queuer.open(settings, maintenance=False)
    stop = asyncio.Event()
    task = asyncio.ensure_future(queuer.run(stop))
    peak = before
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, int(client.info("memory")["used_memory"]))
        await asyncio.sleep(0.2)
    stop.set()
    await task
    lanes = sum(
        int(client.llen(key))
        for key in client.scan_iter(match=f"{settings.redis.key_prefix}queue:*")
    )
    client.close()
    return {
        "used_memory_before_mb": before / 2**20,
        "used_memory_peak_mb": peak / 2**20,
        "ids_in_lanes": float(lanes),
    }


async def prune_rate(settings: Any, conn: psycopg.Connection[Any], count: int) -> dict[str, float]:
    conn.execute(
        b"UPDATE jobs SET status = 'completed', updated = now() - interval '30 days' "
        b"WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' LIMIT %s)",
        (count,),
    )
    queuer = await Queuer.open(settings)
    try:
        began = time.perf_counter()
        result = await queuer.pruner.run_once(max_batches=count // 5000 + 1)
        seconds = time.perf_counter() - began
    finally:
        await queuer.close()
    return {"deleted": float(result.jobs), "jobs_per_s": result.jobs / seconds}


def write_json(path: str, results: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    settings = load_settings(
        overrides={"database.schema": "conveyor_scale", "redis.key_prefix": "scale:"}
    )
    db, rd = settings.database, settings.redis
    wipe_namespace(db.url, db.schema_name, rd.url, rd.key_prefix)
    migrate(db.url, db.schema_name)
    app = Conveyor(settings)
    app.task(name="scale.noop", queue="scale")(lambda payload: None)
    results: dict[str, Any] = {"jobs": args.jobs}

    results["enqueue_empty_jobs_per_s"] = enqueue_rate(app, 50_000)
    print("enqueue, empty table:", round(results["enqueue_empty_jobs_per_s"]), "jobs/s")
    filled = time.perf_counter()
    enqueue_rate(app, args.jobs - 50_000)
    results["fill_seconds"] = time.perf_counter() - filled
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema_name}"'.encode())
        conn.execute(b"VACUUM ANALYZE jobs")
        results["enqueue_with_backlog_jobs_per_s"] = enqueue_rate(app, 50_000)
        print(
            f"enqueue, {args.jobs:,} waiting:",
            round(results["enqueue_with_backlog_jobs_per_s"]),
            "jobs/s",
        )
        results["dispatch_pass_ready"] = await dispatch_pass(settings)
        print(f"dispatch pass, {args.jobs:,} ready:", results["dispatch_pass_ready"])
        results["admin"] = await admin_latency(settings)
        print("admin:", results["admin"])
        results["redis"] = await redis_memory_under_queuer(settings)
        print("redis under a queuer:", results["redis"])
        conn.execute(
            b"UPDATE jobs SET status = 'queued', dispatched_at = NULL WHERE status = 'dispatched'"
        )
        conn.execute(b"UPDATE jobs SET run_at = now() + interval '1 day'")
        conn.execute(b"VACUUM ANALYZE jobs")
        results["dispatch_pass_all_scheduled"] = await dispatch_pass(settings)
        print(
            f"dispatch pass, {args.jobs:,} scheduled later:", results["dispatch_pass_all_scheduled"]
        )
        results["prune"] = await prune_rate(settings, conn, min(200_000, args.jobs // 2))
        print("prune:", results["prune"])
    app.close()
    wipe_namespace(db.url, db.schema_name, rd.url, rd.key_prefix)
    if args.json_path:
        write_json(args.json_path, results)


if __name__ == "__main__":
    asyncio.run(main())
