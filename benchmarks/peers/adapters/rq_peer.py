"""RQ adapter: ``Queue.enqueue_many`` (pipelined), SimpleWorker, default result TTL.

RQ's default worker forks a work-horse process per job, which caps a no-op workload at a
few hundred jobs/s.  RQ documents ``SimpleWorker`` (no fork, job runs in the worker
process) for exactly this case, so each of the 2 worker processes is
``rq worker -w rq.SimpleWorker``.  Results keep RQ's default TTL (500 s): ``result_ttl=0``
was measured slower (deleting the job costs more round trips than letting it expire).
"""

from __future__ import annotations

import os

import _common
from redis import Redis
from rq import Queue

PEER = "rq"
PACKAGES = ["rq", "redis", "hiredis"]
DURABLE = False
DURABLE_NOTE = "jobs and queues are Redis keys only"
CHUNK = 1000
RESULT_TTL = int(os.environ.get("BENCH_RQ_RESULT_TTL", "500"))
SETTINGS = (
    f"2 x `rq worker -w rq.SimpleWorker --results-ttl {RESULT_TTL}`; enqueue: Queue.enqueue_many "
    f"in pipelined chunks of {CHUNK}, result_ttl={RESULT_TTL}"
)
FUNC = "rq_peer.noop"

_conn = Redis.from_url(_common.broker_url())
queue = Queue("bench", connection=_conn)


def noop(ts: float = 0.0) -> None:
    _common.record_sync(ts)


def enqueue_bulk(n: int) -> None:
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        queue.enqueue_many([Queue.prepare_data(FUNC, result_ttl=RESULT_TTL) for _ in range(size)])


def enqueue_one(ts: float) -> None:
    queue.enqueue_call(FUNC, kwargs={"ts": ts}, result_ttl=RESULT_TTL)


def worker_commands() -> list[list[str]]:
    return [
        [
            _common.bin_path("rq"),
            "worker",
            "-u",
            _common.broker_url(),
            "-w",
            "rq.SimpleWorker",
            "--results-ttl",
            str(RESULT_TTL),
            "--quiet",
            "--disable-job-desc-logging",
            "--name",
            f"bench{i}",
            "bench",
        ]
        for i in range(2)
    ]
