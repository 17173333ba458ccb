"""taskiq adapter: taskiq-redis ``ListQueueBroker``, no result backend, 2 worker processes.

``ListQueueBroker`` (LPUSH / BRPOP) is taskiq-redis' simplest and fastest broker; it does
not acknowledge messages (``RedisStreamBroker`` does, at some cost).  ``taskiq worker``
forks the 2 worker processes itself (``--workers 2``); each runs up to
``--max-async-tasks`` tasks concurrently on its event loop.
"""

from __future__ import annotations

import asyncio
import os

import _common
from taskiq_redis import ListQueueBroker

PEER = "taskiq"
PACKAGES = ["taskiq", "taskiq-redis", "redis", "hiredis"]
DURABLE = False
DURABLE_NOTE = "ListQueueBroker: messages exist only in Redis memory"
BATCH = 500
MAX_ASYNC = os.environ.get("BENCH_TASKIQ_MAX_ASYNC", "1000")
SETTINGS = (
    f"`taskiq worker taskiq_peer:broker --workers 2 --max-async-tasks {MAX_ASYNC}`, "
    f"ListQueueBroker, no result backend; enqueue: kiq gathered {BATCH} at a time"
)

broker = ListQueueBroker(url=_common.broker_url(), queue_name="bench")


@broker.task(task_name="noop")
async def noop(ts: float = 0.0) -> None:
    await _common.record_async(ts)


async def connect() -> None:
    await broker.startup()


async def close() -> None:
    await broker.shutdown()


async def enqueue_bulk(n: int) -> None:
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        await asyncio.gather(*(noop.kiq() for _ in range(size)))


async def enqueue_one(ts: float) -> None:
    await noop.kiq(ts)


def worker_commands() -> list[list[str]]:
    return [
        [
            _common.bin_path("taskiq"),
            "worker",
            "taskiq_peer:broker",
            "--workers",
            "2",
            "--max-async-tasks",
            MAX_ASYNC,
            "--log-level",
            "WARNING",
        ]
    ]
