"""SAQ adapter: Redis queue, ``saq --workers 2``, job info dropped on completion.

SAQ's CLI starts the extra worker process itself (``--workers 2``).  Each process runs
``concurrency`` jobs at once on its event loop; dequeue is a blocking BLMOVE, so no
polling delay.  ``ttl=-1`` (documented: "-1 means disabled") keeps no job data or result
after completion.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import _common
from saq import Queue

PEER = "saq"
PACKAGES = ["saq", "redis", "hiredis"]
DURABLE = False
DURABLE_NOTE = "Redis queue: jobs exist only in Redis memory (SAQ's Postgres queue not used)"
BATCH = 500
CONCURRENCY = int(os.environ.get("BENCH_SAQ_CONCURRENCY", "50"))
SETTINGS = (
    f"`saq saq_peer.settings --workers 2 --quiet`, concurrency={CONCURRENCY} per process, "
    f"job ttl=-1; enqueue: Queue.enqueue gathered {BATCH} at a time"
)

queue = Queue.from_url(_common.broker_url(), name="bench")


async def noop(ctx: dict[str, Any], *, ts: float = 0.0) -> None:
    await _common.record_async(ts)


settings = {"queue": queue, "functions": [noop], "concurrency": CONCURRENCY}


async def connect() -> None:
    await queue.connect()


async def close() -> None:
    await queue.disconnect()


async def enqueue_bulk(n: int) -> None:
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        await asyncio.gather(*(queue.enqueue("noop", ttl=-1) for _ in range(size)))


async def enqueue_one(ts: float) -> None:
    await queue.enqueue("noop", ttl=-1, ts=ts)


def worker_commands() -> list[list[str]]:
    return [[_common.bin_path("saq"), "saq_peer.settings", "--workers", "2", "--quiet"]]
