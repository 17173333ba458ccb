"""arq adapter: ``enqueue_job`` gathered in batches, 2 x ``arq`` worker, results not kept.

arq workers poll the queue (a sorted set) every ``poll_delay`` seconds (default 0.5 s),
which would dominate both drain and latency; ``poll_delay`` and ``max_jobs`` are
documented Worker settings and are set to what was fastest here.  ``keep_result=0``
stores no result.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import _common
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

PEER = "arq"
PACKAGES = ["arq", "redis", "hiredis"]
DURABLE = False
DURABLE_NOTE = "jobs are Redis keys only"
BATCH = 500
MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "20"))
POLL_DELAY = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.01"))
SETTINGS = (
    f"2 x `arq arq_peer.WorkerSettings` (warnings-only logging), max_jobs={MAX_JOBS}, "
    f"poll_delay={POLL_DELAY}s, keep_result=0; enqueue: enqueue_job gathered {BATCH} at a time"
)
REDIS = RedisSettings(host=_common.HOST, port=_common.BROKER_PORT, database=_common.BROKER_DB)


async def noop(ctx: dict[str, Any], ts: float = 0.0) -> None:
    await _common.record_async(ts)


# The CLI logs two INFO lines per job by default; keep warnings only (as for every peer).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


class WorkerSettings:
    functions = [noop]
    redis_settings = REDIS
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY
    keep_result = 0
    max_tries = 1
    log_results = False


_pool: dict[str, ArqRedis] = {}


async def connect() -> None:
    _pool["r"] = await create_pool(REDIS)


async def close() -> None:
    pool = _pool.pop("r", None)
    if pool is not None:
        await pool.aclose()


async def enqueue_bulk(n: int) -> None:
    pool = _pool["r"]
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(size)))


async def enqueue_one(ts: float) -> None:
    await _pool["r"].enqueue_job("noop", ts)


def worker_commands() -> list[list[str]]:
    return [
        [
            _common.bin_path("arq"),
            "arq_peer.WorkerSettings",
            "--custom-log-dict",
            "arq_peer.LOG_CONFIG",
        ]
        for _ in range(2)
    ]
