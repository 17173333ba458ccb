"""Maintenance passes: rescue lost attempts, heal lost dispatches, prune old rows.

Each pass is a small class with `run_once()`, which tests call directly on fabricated
state. The queuer runs them on their intervals in the one process that holds the
maintenance advisory lock.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from conveyor import metrics
from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.store import Queries

log = logging.getLogger("conveyor.maintenance")
WORKER_LOST = "worker lost"
Hook = Callable[[], Awaitable[None]]


def leader_lock_id(schema: str) -> int:
    return zlib.crc32(f"conveyor-maintenance:{schema}".encode())


@dataclass
class RescueResult:
    requeued: list[UUID] = field(default_factory=list)
    dead: list[UUID] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.requeued) + len(self.dead)


async def rescue(
    conn: psycopg.AsyncConnection[Any],
    queries: Queries,
    candidates: list[tuple[UUID, int]],
    reason: str = WORKER_LOST,
    stagger: float = 0.0,
) -> RescueResult:
    """Give back the chosen attempts, guarded by their fencing tokens (one statement)."""
    result = RescueResult()
    if not candidates:
        return result
    rows = await conn.execute(
        queries["rescue_jobs"],
        {
            "ids": [job_id for job_id, _ in candidates],
            "tokens": [token for _, token in candidates],
            "reason": reason,
            "stagger": stagger,
        },
    )
    for job_id, queue, task, status in await rows.fetchall():
        (result.dead if status == "dead" else result.requeued).append(job_id)
        metrics.FAILED.labels(queue, task).inc()
        (metrics.DEAD if status == "dead" else metrics.RETRIED).labels(queue, task).inc()
        metrics.RESCUED.labels("dead" if status == "dead" else "requeued").inc()
    return result


class Rescuer:
    """Running jobs whose lease expired, or whose worker went silent, run again."""

    def __init__(self, pool: AsyncConnectionPool, queries: Queries, settings: Settings) -> None:
        self.pool = pool
        self.queries = queries
        self.settings = settings
        self.interval = settings.maintenance.rescue_interval
        # Tests pause here to stage the rescuer-versus-completion race.
        self.before_write: Hook | None = None
        self.counts: Counter[str] = Counter()

    async def run_once(self) -> RescueResult:
        async with self.pool.connection() as conn:
            rows = await conn.execute(
                self.queries["find_lost_jobs"],
                {"dead_after": self.settings.worker.dead_after, "limit": 1000},
            )
            candidates = [(row[0], row[1]) for row in await rows.fetchall()]
        if not candidates:
            return RescueResult()
        if self.before_write is not None:
            await self.before_write()
        async with self.pool.connection() as conn:
            result = await rescue(conn, self.queries, candidates)
        self.counts["requeued"] += len(result.requeued)
        self.counts["dead"] += len(result.dead)
        self.counts["skipped"] += len(candidates) - result.total
        if result.total:
            log.warning(
                "rescued %d lost job(s): %d queued again, %d dead (worker lost)",
                result.total,
                len(result.requeued),
                len(result.dead),
            )
        return result


@dataclass
class ReconcileResult:
    requeued: list[UUID] = field(default_factory=list)


class Reconciler:
    """Jobs PostgreSQL calls dispatched but no lane holds (evicted keys, a queuer killed
    between commit and push) go back to queued, so the queuer dispatches them again."""

    def __init__(
        self, pool: AsyncConnectionPool, queries: Queries, lanes: Lanes, settings: Settings
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.lanes = lanes
        self.grace = settings.maintenance.reconcile_grace
        self.interval = settings.maintenance.reconcile_interval
        self.counts: Counter[str] = Counter()

    async def run_once(self) -> ReconcileResult:
        # PostgreSQL first, Redis second: a job popped in between is either running by
        # now (the guarded reset skips it) or its claim will fail and it is dispatched again.
        async with self.pool.connection() as conn:
            rows = await conn.execute(self.queries["dispatched_before"], {"grace": self.grace})
            dispatched = {str(row[0]): row[1] for row in await rows.fetchall()}
            paused = await conn.execute(self.queries["paused_queues"])
            paused_in_db = {row[0] for row in await paused.fetchall()}
        await self._sync_paused(paused_in_db)
        if not dispatched:
            return ReconcileResult()
        in_lanes = await self.lanes.contents(set(dispatched.values()))
        missing = [UUID(job_id) for job_id in dispatched if job_id not in in_lanes]
        if not missing:
            return ReconcileResult()
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.queries["undispatch"], {"ids": missing})
            # Most candidates were merely claimed between our two reads: count real resets.
            requeued = [row[0] for row in await cur.fetchall()]
        if requeued:
            self.counts["requeued"] += len(requeued)
            metrics.RECONCILED.inc(len(requeued))
            log.warning(
                "%d dispatched job(s) were missing from Redis; queued them again", len(requeued)
            )
        return ReconcileResult(requeued)

    async def _sync_paused(self, paused_in_db: set[str]) -> None:
        """Workers skip the lanes in Redis's paused set; a pause or resume made while Redis
        was down would otherwise linger there. PostgreSQL's job_queues decides."""
        if await self.lanes.paused() != paused_in_db:
            await self.lanes.set_paused(sorted(paused_in_db))
            self.counts["paused_synced"] += 1
            log.warning("the paused-queue set in Redis was out of date; synced it")


@dataclass
class PruneResult:
    jobs: int = 0
    logs: int = 0
    workers: int = 0


class Pruner:
    """Delete finished jobs and their logs past retention, in bounded batches."""

    BATCH = 5000

    def __init__(self, pool: AsyncConnectionPool, queries: Queries, settings: Settings) -> None:
        self.pool = pool
        self.queries = queries
        self.settings = settings
        self.interval = settings.maintenance.prune_interval

    async def run_once(self, max_batches: int = 100) -> PruneResult:
        result = PruneResult()
        retention = self.settings.maintenance.retention
        params = {
            "retention": retention,
            "dead_retention": self.settings.maintenance.dead_retention,
            "limit": self.BATCH,
        }
        async with self.pool.connection() as conn:
            for name, attr in (("prune_finished_jobs", "jobs"), ("prune_job_logs", "logs")):
                for _ in range(max_batches):
                    deleted = (await conn.execute(self.queries[name], params)).rowcount
                    setattr(result, attr, getattr(result, attr) + deleted)
                    if deleted < self.BATCH:
                        break
            cur = await conn.execute(self.queries["prune_workers"], {"retention": retention})
            result.workers = cur.rowcount
        if result.jobs or result.logs:
            log.info("pruned %d job(s) and %d log row(s)", result.jobs, result.logs)
        return result


class QueueGauges:
    """Refresh queue_length and oldest_job_age_seconds for Prometheus."""

    def __init__(self, pool: AsyncConnectionPool, queries: Queries, interval: float = 5.0) -> None:
        self.pool = pool
        self.queries = queries
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._seen: set[tuple[str, str]] = set()

    async def run_once(self) -> dict[tuple[str, str], int]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(self.queries["queue_depths"])).fetchall()
        depths = {(queue, lane): waiting for queue, lane, waiting, _ in rows}
        oldest: dict[str, float] = {}
        for queue, _lane, _waiting, age in rows:
            oldest[queue] = max(oldest.get(queue, 0.0), age or 0.0)
        # Queues that emptied must read 0, not their last value.
        for queue, lane in self._seen - depths.keys():
            metrics.QUEUE_LENGTH.labels(queue, lane).set(0)
            metrics.OLDEST_AGE.labels(queue).set(0)
        for (queue, lane), waiting in depths.items():
            metrics.QUEUE_LENGTH.labels(queue, lane).set(waiting)
        for queue, age in oldest.items():
            metrics.OLDEST_AGE.labels(queue).set(age)
        self._seen = set(depths)
        return depths


class Schedule:
    """Runs each pass when its interval has elapsed; tells the caller how long to sleep."""

    def __init__(self, passes: list[Rescuer | Reconciler | Pruner | QueueGauges]) -> None:
        self.passes = passes
        self.due = dict.fromkeys(range(len(passes)), 0.0)

    async def run_due(self) -> None:
        now = time.monotonic()
        for index, job in enumerate(self.passes):
            if self.due[index] <= now:
                # Set before running: a pass that fails waits its interval, not a hot loop.
                self.due[index] = now + job.interval
                await job.run_once()

    def seconds_until_due(self) -> float:
        if not self.passes:
            return 3600.0
        return max(0.0, min(self.due.values()) - time.monotonic())
