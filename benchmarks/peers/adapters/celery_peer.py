"""Celery adapter: Redis broker (kombu), no result backend, solo pool.

Each of the 2 worker processes runs ``celery worker --pool solo``: the task body runs in
the consumer process itself, which for no-op jobs beat prefork (one IPC hop per job) and
threads on this machine.  Gossip, mingle and heartbeats are off and results are ignored,
as Celery's optimisation guide suggests.  ``task_acks_late=True`` gives at-least-once
delivery like the other peers; acks-early and prefetch multiplier 64 measured no faster
(within run-to-run noise), so the default multiplier (4) is kept.
"""

from __future__ import annotations

import os
from typing import Any

import _common
from celery import Celery

PEER = "celery"
PACKAGES = ["celery", "kombu", "redis", "hiredis"]
DURABLE = False
DURABLE_NOTE = "Redis broker: queued messages exist only in Redis memory"
POOL = os.environ.get("BENCH_CELERY_POOL", "solo")
CONCURRENCY = os.environ.get("BENCH_CELERY_CONCURRENCY", "1")
PREFETCH = int(os.environ.get("BENCH_CELERY_PREFETCH", "4"))
ACKS_LATE = os.environ.get("BENCH_CELERY_ACKS_LATE", "1") == "1"
SETTINGS = (
    f"2 x `celery worker --pool {POOL} --concurrency {CONCURRENCY} --without-gossip "
    f"--without-mingle --without-heartbeat`; task_ignore_result=True, "
    f"worker_prefetch_multiplier={PREFETCH}, task_acks_late={ACKS_LATE}; "
    "enqueue: apply_async in a loop on one shared producer"
)

app = Celery("celery_peer", broker=_common.broker_url())
app.conf.update(
    task_ignore_result=True,
    task_store_errors_even_if_ignored=False,
    task_acks_late=ACKS_LATE,
    worker_prefetch_multiplier=PREFETCH,
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(ts: float = 0.0) -> None:
    _common.record_sync(ts)


_producer: dict[str, Any] = {}


def connect() -> None:
    ctx = app.producer_or_acquire()
    _producer["ctx"] = ctx
    _producer["p"] = ctx.__enter__()


def close() -> None:
    ctx = _producer.pop("ctx", None)
    if ctx is not None:
        ctx.__exit__(None, None, None)


def enqueue_bulk(n: int) -> None:
    producer = _producer["p"]
    for _ in range(n):
        noop.apply_async(producer=producer)


def enqueue_one(ts: float) -> None:
    noop.apply_async(kwargs={"ts": ts}, producer=_producer["p"])


def worker_commands() -> list[list[str]]:
    return [
        [
            _common.bin_path("celery"),
            "-A",
            "celery_peer",
            "worker",
            "-Q",
            "bench",
            "--pool",
            POOL,
            "--concurrency",
            CONCURRENCY,
            "--loglevel",
            "WARNING",
            "-n",
            f"bench{i}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        for i in range(2)
    ]
