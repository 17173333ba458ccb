"""Maintenance passes: rescue lost attempts, heal lost dispatches, prune old rows.

Each pass is a small class built from the store (and lanes) with `run_once()`, which
tests call directly on fabricated state. The queuer runs them on their intervals in the
one process that holds the maintenance lock. (The queue gauges are not a pass: every
process that serves /metrics reads them, see `conveyor.queue_gauges`.)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from conveyor import metrics, watchdog
from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.log_context import job_fields
from conveyor.store import Store
from conveyor.store.upkeep import LeasedJob
from conveyor.vocabulary import DEAD

log = logging.getLogger("conveyor.maintenance")
WORKER_LOST = "worker lost"
Hook = Callable[[], Awaitable[None]]


@dataclass
class RescueResult:
    requeued: list[UUID] = field(default_factory=list)
    dead: list[UUID] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.requeued) + len(self.dead)


async def rescue(
    store: Store,
    candidates: Sequence[LeasedJob],
    reason: str = WORKER_LOST,
    stagger: float = 0.0,
) -> RescueResult:
    """Give back the chosen attempts, guarded by their fencing tokens (one statement)."""
    result = RescueResult()
    for job in await store.rescue_jobs(candidates, reason, stagger):
        dead = job.status == DEAD
        (result.dead if dead else result.requeued).append(job.id)
        metrics.FAILED.labels(job.queue_name, job.task).inc()
        (metrics.DEAD if dead else metrics.RETRIED).labels(job.queue_name, job.task).inc()
        metrics.RESCUED.labels(DEAD if dead else "requeued").inc()
        # One line per job, so a search by job_id finds how its attempt ended.
        log.log(
            logging.WARNING if dead else logging.INFO,
            "job %s (%s): attempt %d was lost (%s); %s",
            job.id,
            job.task,
            job.attempt,
            reason,
            "out of attempts, the job is dead" if dead else "queued to run again",
            extra=job_fields(job.id, job.queue_name, job.task, job.attempt, job.worker_id),
        )
    return result


class Rescuer:
    """Running jobs whose lease expired, or whose worker went silent, run again."""

    LIMIT = 1000

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.dead_after = settings.worker.dead_after
        self.interval = settings.maintenance.rescue_interval
        # Tests pause here to stage the rescuer-versus-completion race.
        self.before_write: Hook | None = None
        self.counts: Counter[str] = Counter()

    async def run_once(self) -> RescueResult:
        candidates = await self.store.find_lost_jobs(self.dead_after, self.LIMIT)
        if not candidates:
            return RescueResult()
        if self.before_write is not None:
            await self.before_write()
        result = await rescue(self.store, candidates)
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

    def __init__(self, store: Store, lanes: Lanes, settings: Settings) -> None:
        self.store = store
        self.lanes = lanes
        self.grace = settings.maintenance.reconcile_grace
        self.interval = settings.maintenance.reconcile_interval
        self.counts: Counter[str] = Counter()

    async def run_once(self) -> ReconcileResult:
        # PostgreSQL first, Redis second: a job popped in between is either running by
        # now (the guarded reset skips it) or its claim will fail and it is dispatched again.
        async with self.store.connection() as conn:
            store = self.store.bound_to(conn)
            candidates = await store.dispatched_before(self.grace)
            paused_in_db = await store.paused_queues()
        dispatched = {str(job.id): job.queue_name for job in candidates}
        await self._sync_paused(paused_in_db)
        if not dispatched:
            return ReconcileResult()
        in_lanes = await self.lanes.contents(set(dispatched.values()))
        missing = [UUID(job_id) for job_id in dispatched if job_id not in in_lanes]
        if not missing:
            return ReconcileResult()
        # Most candidates were merely claimed between our two reads: count real resets.
        requeued = await self.store.undispatch(missing)
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
    metrics_minutes: int = 0
    metrics_hours: int = 0
    batches: int = 0


class Pruner:
    """Delete finished jobs and their logs past retention, in bounded batches (and the
    other rows kept for a while: workers, metrics history, finished job batches)."""

    BATCH = 5000

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.retention = settings.maintenance.retention
        self.dead_retention = settings.maintenance.dead_retention
        self.interval = settings.maintenance.prune_interval
        self.minute_retention = settings.metrics.minute_retention
        self.hour_retention = settings.metrics.hour_retention

    async def run_once(self, max_batches: int = 100) -> PruneResult:
        result = PruneResult()
        # One connection for every batch, as the batches run back to back.
        async with self.store.connection() as conn:
            store = self.store.bound_to(conn)
            for _ in range(max_batches):
                # A long prune is progress, not a stuck maintenance loop.
                watchdog.beat("queuer.maintenance")
                deleted = await store.prune_finished_jobs(
                    self.retention, self.dead_retention, self.BATCH
                )
                result.jobs += deleted
                if deleted < self.BATCH:
                    break
            for _ in range(max_batches):
                watchdog.beat("queuer.maintenance")
                deleted = await store.prune_job_logs(self.retention, self.BATCH)
                result.logs += deleted
                if deleted < self.BATCH:
                    break
            result.workers = await store.prune_workers(self.retention)
            # An hour's worth of rows per pass at the default interval: no batches needed.
            result.metrics_minutes = await store.prune_metrics_minutes(self.minute_retention)
            result.metrics_hours = await store.prune_metrics_hours(self.hour_retention)
            # A finished batch is kept as long as the longest-kept of its jobs could be.
            result.batches = await store.prune_batches(max(self.retention, self.dead_retention))
        if result.jobs or result.logs:
            log.info("pruned %d job(s) and %d log row(s)", result.jobs, result.logs)
        return result


class Pass(Protocol):
    interval: float

    async def run_once(self) -> object: ...


class Schedule:
    """Runs each pass when its interval has elapsed; tells the caller how long to sleep."""

    def __init__(self, passes: Sequence[Pass]) -> None:
        self.passes = list(passes)
        self.due = [0.0] * len(self.passes)

    def reset(self) -> None:
        """Make every pass due now (a queuer that has just become the leader)."""
        self.due = [0.0] * len(self.passes)

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
        return max(0.0, min(self.due) - time.monotonic())
