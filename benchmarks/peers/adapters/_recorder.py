"""Configuration and the task-side completion recorder shared by every peer adapter.

Imported by the tasks inside the peers' worker processes, so it depends only on the
standard library and redis-py.  Every no-op task calls :func:`record_sync` or
:func:`record_async`, which counts the job (and, when it carries a timestamp, its
enqueue->start delay); a per-process thread adds those to a counter (INCRBY) and a list
(RPUSH) in a Redis database that belongs to the benchmark.
"""

from __future__ import annotations

import os
import threading
import time

import redis

HOST = "127.0.0.1"  # the only host this benchmark ever talks to
DONE_KEY = "bench:done"
LAT_KEY = "bench:lat"
FLUSH_S = 0.005


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


BROKER_PORT = _env_int("BENCH_BROKER_PORT", 6379)
BROKER_DB = _env_int("BENCH_BROKER_DB", 12)
COUNTER_PORT = _env_int("BENCH_COUNTER_PORT", 6379)
COUNTER_DB = _env_int("BENCH_COUNTER_DB", 13)
PG_DSN = os.environ.get("BENCH_PG_DSN", f"host={HOST} port=5432 user=postgres")
PG_DBNAME = os.environ.get("BENCH_PG_DBNAME", "bench_peer_procrastinate")


def broker_url() -> str:
    return f"redis://{HOST}:{BROKER_PORT}/{BROKER_DB}"


class _Recorder:
    """Per-process completion counter, flushed to Redis by a background thread.

    Tasks only bump an in-memory count (and keep their enqueue->start delay), so the
    measurement adds no Redis round trip per job; every FLUSH_S the thread sends one
    RPUSH (delays) + INCRBY (count) pipeline.  Delays are pushed before the count, so
    once the harness sees the full count every delay is already stored.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.delays: list[float] = []
        threading.Thread(target=self._flush_forever, name="bench-recorder", daemon=True).start()

    def add(self, delay: float | None) -> None:
        with self.lock:
            self.done += 1
            if delay is not None:
                self.delays.append(delay)

    def _flush_forever(self) -> None:
        client = redis.Redis(host=HOST, port=COUNTER_PORT, db=COUNTER_DB)
        while True:
            time.sleep(FLUSH_S)
            with self.lock:
                done, delays = self.done, self.delays
                self.done, self.delays = 0, []
            if done:
                pipe = client.pipeline(transaction=False)
                if delays:
                    pipe.rpush(LAT_KEY, *delays)
                pipe.incrby(DONE_KEY, done)
                pipe.execute()


_recorders: dict[int, _Recorder] = {}
_recorders_lock = threading.Lock()


def record_sync(ts: float = 0.0) -> None:
    """Body of every synchronous no-op task: count it (and its delay if ts is set)."""
    delay = time.time() - ts if ts else None
    pid = os.getpid()  # one recorder per process, created after any fork
    recorder = _recorders.get(pid)
    if recorder is None:
        with _recorders_lock:
            recorder = _recorders.get(pid)
            if recorder is None:
                recorder = _recorders[pid] = _Recorder()
    recorder.add(delay)


async def record_async(ts: float = 0.0) -> None:
    """Body of every asynchronous no-op task (never blocks: no I/O here)."""
    record_sync(ts)
