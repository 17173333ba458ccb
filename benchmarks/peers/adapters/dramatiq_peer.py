"""Dramatiq adapter: RedisBroker, no Results middleware, ``dramatiq --processes 2``.

Dramatiq's CLI forks the worker processes itself, so one command with ``--processes 2``
gives the 2 worker processes.  Each runs a thread pool (``--threads``); with no-op jobs
the threads mostly wait on Redis round trips, so 16 threads measured a little faster
than the default 8 (1, 2 and 4 were much slower; 32 no better).  Messages are acked
after the actor runs (Dramatiq's only mode).
"""

from __future__ import annotations

import os

import _common
import dramatiq
from dramatiq.brokers.redis import RedisBroker

PEER = "dramatiq"
PACKAGES = ["dramatiq", "redis", "hiredis"]
DURABLE = False
DURABLE_NOTE = "RedisBroker: queued messages exist only in Redis memory"
THREADS = os.environ.get("BENCH_DRAMATIQ_THREADS", "16")
SETTINGS = (
    f"`dramatiq --processes 2 --threads {THREADS}`, RedisBroker with default middleware "
    "(no Results backend); enqueue: actor.send in a loop"
)

broker = RedisBroker(url=_common.broker_url())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", actor_name="noop", max_retries=0)
def noop(ts: float = 0.0) -> None:
    _common.record_sync(ts)


def enqueue_bulk(n: int) -> None:
    for _ in range(n):
        noop.send()


def enqueue_one(ts: float) -> None:
    noop.send(ts)


def close() -> None:
    broker.close()


def worker_commands() -> list[list[str]]:
    return [
        [
            _common.bin_path("dramatiq"),
            "dramatiq_peer",
            "--processes",
            "2",
            "--threads",
            THREADS,
            "--queues",
            "bench",
        ]
    ]
