"""Run the benchmark: real queuer and worker processes, jobs enqueued by this process.

Throughput mode enqueues `count` jobs as fast as bulk enqueue allows while the workers
drain; rate mode offers `rate` jobs per second in 10 ms ticks. Either way the run ends
when every job is completed in PostgreSQL, and each job's latency is its own
(started - created, completed - created), on PostgreSQL's clock.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.bench import QUEUE, TASK
from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.launch import Launcher, reset_namespace, settings_env
from conveyor.store.migrate import migrate
from conveyor.store.tools import BenchSummary, ToolStatements

PRIORITIES = {"high": 10, "normal": 100, "low": 200}
ENQUEUE_BATCH = 1000
TICK = 0.01
# Port 1 refuses connections at once, like a stopped Redis on its own host. The bench
# itself keeps the real Redis for its scratch keys and its latency probe.
POSTGRES_ONLY_ENV = {"REDIS_URL": "redis://127.0.0.1:1/0", "WORKER_POSTGRES_ONLY_AFTER": "0"}


@dataclass
class BenchOptions:
    count: int = 10_000
    rate: float | None = None
    priority: int = 100
    timeout: float = 300.0
    payload_size: int = 0
    concurrency: int = 500
    processes: int = 2
    # Enqueue everything into a paused queue, then time the drain alone (the peers'
    # method); otherwise workers drain while the enqueue runs.
    drain: bool = False
    # Give the queuer and the workers a Redis nobody answers on: the workers claim straight
    # from PostgreSQL (postgres-only mode) from their first fetch.
    postgres_only: bool = False
    # A global rate limit on the bench queue ("100000/s"): its jobs then take the limited
    # dispatch path, and every claim records its start (docs/scheduling.md).
    rate_limit: str | None = None
    # A concurrency limit per limit key, the jobs spread over `keys` keys round-robin: the
    # cost of many key budgets (every key scope in each limited pass).
    key_concurrency: int | None = None
    keys: int = 1000


@dataclass
class BenchResult:
    count: int
    completed: int
    mode: str
    options: dict[str, Any]
    enqueue_seconds: float
    enqueue_jobs_per_s: float
    end_to_end_seconds: float
    end_to_end_jobs_per_s: float
    latency_ms: dict[str, dict[str, float]]
    redis_ms: dict[str, float]
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_priority(value: str) -> int:
    if value in PRIORITIES:
        return PRIORITIES[value]
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"priority must be high, normal, low or 0-1000, not {value!r}") from None
    if not 0 <= number <= 1000:
        raise ValueError(f"priority must be from 0 to 1000, not {number}")
    return number


async def run_bench(
    settings: Settings,
    options: BenchOptions,
    progress: Callable[[str, int, int], None] | None = None,
    *,
    configured: Settings,
) -> BenchResult:
    """Run on `settings`' schema and key prefix, which are dropped and wiped first; that is
    refused (ScratchRefused) for the schema and prefix of `configured`, the operator's own
    settings without the benchmark's overrides, and for a schema bench or demo did not make."""
    db, rd = settings.database, settings.redis
    # Behind a transaction-mode pooler, the migration lock needs the direct session.
    session_url = db.direct_url or db.url
    reset_namespace(session_url, db.schema_name, rd.url, rd.key_prefix, configured)
    migrate(session_url, db.schema_name)
    app = Conveyor(settings)
    app.task(name=TASK, queue=QUEUE, max_attempts=1)(_noop)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as logs:
        launcher = Launcher(settings_env(settings, ("log.level",)), Path(logs))
        tools = await ToolStatements.open(settings, "bench", 2)
        try:
            if options.postgres_only:
                launcher.env.update(POSTGRES_ONLY_ENV)
            if options.rate_limit is not None:
                async with Admin(settings) as admin:
                    await admin.set_limit(f"queue:{QUEUE}", "bench", rate=options.rate_limit)
            if options.key_concurrency is not None:
                async with Admin(settings) as admin:
                    # The pattern `*`: every key its own budget of this many at once.
                    await admin.set_limit("key:*", "bench", concurrency=options.key_concurrency)
            launcher.queuer()
            launcher.worker(
                "conveyor.bench.tasks:app", [QUEUE], options.processes, options.concurrency
            )
            await _wait_for_workers(tools, options, launcher)
            probe = RedisProbe(settings)
            probe_task = asyncio.ensure_future(probe.run())
            drain_from = None
            async with Admin(settings) as admin:
                if options.drain:
                    await tools.ensure_queue(QUEUE)
                    await admin.pause(QUEUE, actor="bench")
                started = time.monotonic()
                enqueue_seconds = await _enqueue(app, options, progress)
                if options.drain:
                    drain_from = await tools.bench_now()
                    started = time.monotonic()
                    await admin.resume(QUEUE, actor="bench")
            timed_out = not await _wait_for_completion(tools, options, started, progress)
            probe.stop = True
            await probe_task
            summary = await tools.bench_summary()
            if drain_from is not None and summary.last_completed is not None:
                # The drain starts at the resume, not at the first enqueue.
                span = (summary.last_completed - drain_from).total_seconds()
                summary = replace(summary, span_seconds=span)
        finally:
            launcher.stop()
            await app.aclose()
            await tools.close()
    return _result(options, enqueue_seconds, summary, probe.samples, timed_out)


async def _noop(payload: Any) -> None:
    return None


async def _enqueue_over_keys(
    app: Conveyor, options: BenchOptions, payload: dict[str, str], sent: int, size: int
) -> None:
    """Jobs sent..sent+size in runs of count / keys jobs per key (one bulk enqueue per
    run), so the whole count covers every key evenly."""
    per_key = max(1, -(-options.count // options.keys))
    position = sent
    while position < sent + size:
        run = min(per_key - position % per_key, sent + size - position)
        key = (position // per_key) % options.keys
        await app.aenqueue_many(
            TASK, [payload] * run, priority=options.priority, limit_key=f"bench-{key}"
        )
        position += run


async def _wait_for_workers(
    tools: ToolStatements, options: BenchOptions, launcher: Launcher
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if launcher.dead():
            raise RuntimeError(f"a benchmark process died:\n{launcher.logs()[-3000:]}")
        if await tools.count_live_workers() >= options.processes:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("workers did not start within 60 s")


async def _enqueue(
    app: Conveyor, options: BenchOptions, progress: Callable[[str, int, int], None] | None
) -> float:
    payload = {"pad": "x" * options.payload_size} if options.payload_size else {}
    started = time.monotonic()
    sent = 0
    while sent < options.count:
        if options.rate is None:
            size = min(ENQUEUE_BATCH, options.count - sent)
        else:
            due = min(options.count, int(options.rate * (time.monotonic() - started)) + 1)
            size = due - sent
            if size <= 0:
                await asyncio.sleep(TICK)
                continue
        if options.key_concurrency is None:
            await app.aenqueue_many(TASK, [payload] * size, priority=options.priority)
        else:
            await _enqueue_over_keys(app, options, payload, sent, size)
        sent += size
        if progress:
            progress("enqueued", sent, options.count)
    return time.monotonic() - started


async def _wait_for_completion(
    tools: ToolStatements,
    options: BenchOptions,
    started: float,
    progress: Callable[[str, int, int], None] | None,
) -> bool:
    while time.monotonic() - started < options.timeout:
        done = await tools.count_finished_jobs()
        if progress:
            progress("finished", done, options.count)
        if done >= options.count:
            return True
        await asyncio.sleep(0.25)
    return False


class RedisProbe:
    """Times a cheap Redis command every 5 ms during the run: Redis latency under load."""

    def __init__(self, settings: Settings) -> None:
        self.lanes = Lanes.open(settings)
        self.samples: list[float] = []
        self.stop = False

    async def run(self) -> None:
        try:
            while not self.stop:
                began = time.perf_counter()
                await self.lanes.lengths([QUEUE])  # one round trip
                self.samples.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(0.005)
        finally:
            await self.lanes.close()


def _percentiles(values: list[float] | None, maximum: float | None) -> dict[str, float]:
    p50, p95, p99 = values or (0.0, 0.0, 0.0)
    return {"p50": p50 * 1000, "p95": p95 * 1000, "p99": p99 * 1000, "max": (maximum or 0.0) * 1000}


def _result(
    options: BenchOptions,
    enqueue_seconds: float,
    summary: BenchSummary,
    redis_samples: list[float],
    timed_out: bool,
) -> BenchResult:
    completed = summary.completed
    span = summary.span_seconds or 0.0
    redis_ms = {"samples": float(len(redis_samples))}
    if len(redis_samples) >= 2:
        cuts = statistics.quantiles(redis_samples, n=100)
        redis_ms.update(p50=cuts[49], p99=cuts[98], max=max(redis_samples))
    return BenchResult(
        count=options.count,
        completed=completed,
        mode=("drain" if options.drain else "throughput")
        if options.rate is None
        else f"rate {options.rate:g}/s",
        options=asdict(options),
        enqueue_seconds=enqueue_seconds,
        enqueue_jobs_per_s=options.count / enqueue_seconds if enqueue_seconds else 0.0,
        end_to_end_seconds=span,
        end_to_end_jobs_per_s=completed / span if span else 0.0,
        latency_ms={
            "enqueue_to_start": _percentiles(summary.start_percentiles, summary.start_max),
            "enqueue_to_complete": _percentiles(summary.complete_percentiles, summary.complete_max),
        },
        redis_ms=redis_ms,
        timed_out=timed_out,
    )
