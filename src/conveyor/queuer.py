"""The queuer: moves ready jobs from PostgreSQL into the Redis lanes.

It wakes on NOTIFY from the insert trigger (with a short poll as a safety net, which also
picks up scheduled jobs and retries as they come due), dispatches in batches with one
statement, pushes every batch with one Lua call, and notices a wiped Redis from the
epoch key. It runs the maintenance passes while it holds the leader lock, and the
scheduler (periodic jobs) whether it leads or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from uuid import UUID

from conveyor import metrics, watchdog
from conveyor.aging import LowLaneAging, in_push_order
from conveyor.alerting import AlertDelivery, AlertEvaluator, BackgroundDelivery
from conveyor.config import Settings
from conveyor.errors import DatabaseUnavailable, RedisUnavailable, StatementRejected
from conveyor.expiry import Expirer
from conveyor.fairness import TenantFairness
from conveyor.lanes import EpochLost, Lanes, lane_for_priority
from conveyor.limited_dispatch import LimitedDispatch
from conveyor.maintenance import Pass, Pruner, Reconciler, Rescuer, Schedule
from conveyor.postgres_only import Mode, PostgresOnlyMode, redis_unreachable
from conveyor.retrying import Backoff
from conveyor.rollup import MetricsRollup
from conveyor.scheduler import Scheduler
from conveyor.store import Store
from conveyor.store.dispatch import DispatchedJob
from conveyor.store.lease import Election, LeaseElection
from conveyor.store.listen import Listener

log = logging.getLogger("conveyor.queuer")
# Without Redis, look for it again at least this often: workers are waiting to go back.
REDIS_RETRY_CAP = 1.0


class Queuer:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        lanes: Lanes,
        *,
        maintenance: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lanes = lanes
        self.run_maintenance = maintenance
        self.counts: Counter[str] = Counter()
        self.ready = False
        self.not_ready_reason = "starting"
        self.epoch: str | None = None
        self.postgres_only = PostgresOnlyMode(
            "queuer", "dispatch waits for Redis; workers claim jobs straight from PostgreSQL"
        )
        # The lanes' endpoint generation this queuer last rebuilt for (see sync_epoch).
        self._generation = lanes.generation
        self._wake = asyncio.Event()
        lanes.on_switch(self._wake.set)  # rebuild the new Redis now, not after the backoff
        self._eviction_checked = False
        self._jit_checked = False
        self._owns_parts = False
        self._led = False
        self.listener: Election
        db = settings.database
        if db.pooler_mode == "transaction" and db.direct_url is None:
            # No session to LISTEN on or to hold a lock: poll (queuer.poll_interval) and
            # elect the maintenance leader with a lease row.
            self.listener = LeaseElection(store, lead=maintenance)
        else:
            self.listener = Listener(settings, self._wake.set, lead=maintenance)
        self.rescuer = Rescuer(store, settings)
        self.reconciler = Reconciler(store, lanes, settings)
        self.pruner = Pruner(store, settings)
        self.rollup = MetricsRollup(store, settings)
        self.expirer = Expirer(store, settings)
        self.aging = LowLaneAging(store, lanes, settings)
        self.alert_evaluator = AlertEvaluator(store, settings, self._alert_state)
        self.alert_delivery = BackgroundDelivery(AlertDelivery(store, settings))
        alerting: list[Pass] = (
            [self.alert_evaluator, self.alert_delivery] if settings.alerts.enabled else []
        )
        # The rollup first: the alert rules read the minute it has just written.
        aging: list[Pass] = [self.aging] if self.aging.enabled else []
        self._leader_passes = Schedule(
            [
                self.rescuer,
                self.reconciler,
                self.pruner,
                self.rollup,
                self.expirer,
                *aging,
                *alerting,
            ]
        )
        # Every queuer runs the scheduler, leader or not: its guarded advance makes one job
        # per tick, and ticks keep coming through a leader election.
        self.scheduler = Scheduler(store, settings)
        self.limited = LimitedDispatch(settings, store)
        self.fairness = TenantFairness(settings, store)
        self._every_queuer_passes = Schedule(
            [self.scheduler] if settings.scheduler.enabled and maintenance else []
        )

    @classmethod
    async def open(cls, settings: Settings, *, maintenance: bool = True) -> Queuer:
        """A queuer with its own store and lanes, closed with it."""
        store = await Store.open(settings, "queuer")
        queuer = cls(settings, store, Lanes.open(settings), maintenance=maintenance)
        queuer._owns_parts = True
        return queuer

    @property
    def mode(self) -> Mode:
        return self.postgres_only.mode

    @property
    def is_leader(self) -> bool:
        return self.listener.is_leader

    def _alert_state(self) -> tuple[bool, bool, str]:
        """What the alert rules need from the leader: postgres-only, on a backup Redis."""
        endpoint = self.lanes.endpoint
        return self.postgres_only.active, endpoint.on_backup, endpoint.url

    async def close(self) -> None:
        await self.alert_delivery.close()
        await self.listener.close()
        if self._owns_parts:
            await self.store.close()
            await self.lanes.close()

    # -- the epoch: detecting a wiped Redis ----------------------------------------------

    async def sync_epoch(self) -> None:
        """Adopt Redis's epoch; if Redis has none (wiped, or new), rebuild its state."""
        generation = self.lanes.generation
        if generation != self._generation:
            await self._rebuild_after_switch(generation)
            return
        current = await self.lanes.current_epoch()
        if current is not None and current == self.epoch:
            return
        if current is None:
            epoch, created = await self.lanes.claim_epoch()
        else:
            epoch, created = current, False
        if created:
            await self.rebuild_redis()
        elif self.epoch is not None:
            log.warning("Redis epoch changed under us; adopting the new one")
        self.epoch = epoch

    async def _rebuild_after_switch(self, generation: int) -> None:
        """The lanes moved to another Redis (failover, failback, Sentinel promotion). It may
        hold an epoch and ids from an earlier stay, but not the jobs dispatched into the one
        we left: re-dispatch them now rather than after the reconciler's grace. Stale ids
        there are harmless: a claim only takes a job that is dispatched."""
        epoch, _ = await self.lanes.claim_epoch()
        await self.rebuild_redis(f"Redis in use is now {self.lanes.endpoint.url}")
        self.epoch = epoch
        self._generation = generation

    async def rebuild_redis(self, why: str = "Redis was empty") -> int:
        """Redis lost everything: re-dispatch every dispatched job and restore pauses."""
        reset = await self.store.undispatch_all_before(await self.store.database_now())
        await self.lanes.set_paused(sorted(await self.store.paused_queues()))
        self.counts["redis_rebuilds"] += 1
        metrics.REDIS_REBUILDS.inc()
        log.warning("%s: %d dispatched job(s) queued again for dispatch", why, reset)
        self._wake.set()
        return reset

    # -- dispatch ------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """One pass: mark a batch dispatched in PostgreSQL, then push it; return the count."""
        if self.epoch is None:
            await self.sync_epoch()
        queuer = self.settings.queuer
        jobs = await self.store.dispatch_ready(
            queuer.buffer_per_queue, queuer.batch_size, self.fairness.queues
        )
        jobs += await self.limited.dispatch()
        fair = await self.fairness.dispatch()
        if not jobs and not fair:
            return 0
        groups: dict[str, list[str]] = defaultdict(list)
        # Each lane pops in priority-then-age order, aged low jobs before the rest.
        for job, lane in in_push_order(jobs, self.settings):
            groups[self.lanes.keys.lane(job.queue_name, lane)].append(str(job.id))
        # Fair queues' jobs come in push order already: round by round across tenants.
        for fair_job in fair:
            lane = lane_for_priority(fair_job.priority)
            groups[self.lanes.keys.lane(fair_job.queue_name, lane)].append(str(fair_job.id))
        jobs += [DispatchedJob(job.id, job.queue_name, job.priority) for job in fair]
        try:
            assert self.epoch is not None  # noqa: S101
            await self.lanes.push(self.epoch, groups)
        except (EpochLost, RedisUnavailable):
            await self._undispatch([job.id for job in jobs])
            raise
        self.counts["dispatched"] += len(jobs)
        for queue, count in Counter(job.queue_name for job in jobs).items():
            metrics.DISPATCHED.labels(queue).inc(count)
        return len(jobs)

    async def _undispatch(self, ids: list[UUID]) -> None:
        try:
            await self.store.undispatch(ids)
        except DatabaseUnavailable:
            log.warning("could not undo a failed push; the reconciler will")

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial=0.1, cap=5.0)
        stop_task = asyncio.ensure_future(stop.wait())
        maintenance = asyncio.ensure_future(self._maintenance_loop(stop))
        try:
            while not stop.is_set():
                watchdog.beat("queuer.dispatch")
                try:
                    wait = await self._iteration()
                    backoff.reset()
                    self.ready, self.not_ready_reason = True, ""
                    self.postgres_only.leave("Redis answers again; dispatch resumes")
                except EpochLost:
                    self.epoch = None
                    log.warning("Redis lost its contents; rebuilding from PostgreSQL")
                    continue
                except RedisUnavailable as error:
                    wait = self._without_redis(error, backoff)
                except DatabaseUnavailable as error:
                    wait = self._degraded("PostgreSQL unreachable", error, backoff)
                    await self.listener.close()
                self._wake.clear()
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {waker, stop_task}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
        finally:
            self.postgres_only.leave("the queuer is stopping")
            watchdog.done("queuer.dispatch")
            watchdog.done("queuer.maintenance")
            stop_task.cancel()
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            await self.close()

    async def _maintenance_loop(self, stop: asyncio.Event) -> None:
        """Rescue, reconcile and prune on their own clock, so a long prune never delays
        dispatch."""
        backoff = Backoff(initial=0.5, cap=10.0)
        while not stop.is_set():
            watchdog.beat("queuer.maintenance")
            try:
                wait = await self._run_due_passes()
                backoff.reset()
            except (DatabaseUnavailable, StatementRejected, RedisUnavailable) as error:
                wait = backoff.next()
                log.warning("maintenance pass failed (%s); retrying in %.1f s", error, wait)
            await asyncio.sleep(max(wait, 0.01))

    async def _run_due_passes(self) -> float:
        """Run what is due; return how long to sleep. Every queuer runs the scheduler; only
        the leader runs the other passes, and the others look again every second."""
        wait = 1.0
        if await self._run_scheduler():
            self._wake.set()  # a tick's job is ready now
        wait = min(wait, self._every_queuer_passes.seconds_until_due())
        if not self.is_leader:
            if self._led:
                self.alert_evaluator.clear_gauges()  # the new leader reports them now
            self._led = False
            return wait
        if not self._led:
            self._led = True
            self._leader_passes.reset()
        before = self.counts_snapshot()
        await self._leader_passes.run_due()
        if self.counts_snapshot() != before:
            self._wake.set()  # rescued or reconciled jobs are ready now
        return min(wait, self._leader_passes.seconds_until_due())

    async def _run_scheduler(self) -> bool:
        """Run the scheduler when due; True when it enqueued jobs. A statement it cannot run
        (a schema without the schedules table) must not keep rescue and the other leader
        passes from running: it is logged, and tried again at its next interval."""
        before = self.scheduler.counts["enqueued"]
        try:
            await self._every_queuer_passes.run_due()
        except StatementRejected as error:
            log.warning("scheduler pass failed (%s); periodic jobs wait", error)
        return self.scheduler.counts["enqueued"] != before

    def counts_snapshot(self) -> tuple[int, ...]:
        return tuple(sum(p.counts.values()) for p in (self.rescuer, self.reconciler))

    async def _warn_about_eviction(self) -> None:
        policy = await self.lanes.eviction_policy()
        self._eviction_checked = True
        if policy and policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %s: Redis may evict lane keys under memory pressure."
                " No job is lost (the reconciler re-dispatches them), but dispatch slows down;"
                " 'noeviction' is the better setting for Conveyor's Redis",
                policy,
            )

    async def _warn_about_jit(self) -> None:
        transaction_pooler = self.settings.database.pooler_mode == "transaction"
        jit = transaction_pooler and await self.store.jit_enabled()
        self._jit_checked = True
        if jit:
            log.warning(
                "JIT is on for Conveyor's connections (a transaction-mode pooler drops the"
                " jit=off Conveyor asks for): dispatch over a large backlog may take hundreds"
                " of ms per pass. Set it for Conveyor's role: ALTER ROLE <role> SET jit = off"
            )

    async def _iteration(self) -> float:
        if not self._jit_checked:
            await self._warn_about_jit()
        # PostgreSQL first: the LISTEN session also holds the leader lock, and rescue must
        # run even when Redis is unreachable from the start.
        await self.listener.ensure_open()
        if not self._eviction_checked:
            await self._warn_about_eviction()
        await self.sync_epoch()
        moved = await self.dispatch_once()
        queuer = self.settings.queuer
        if moved >= queuer.batch_size:
            return 0.0
        if moved or await self.store.has_backlog():
            return queuer.backlog_poll_interval
        if self.limited.next_wake is not None:  # a rate window opens before the next poll
            return max(min(self.limited.next_wake, queuer.poll_interval), 0.001)
        return queuer.poll_interval

    def _without_redis(self, error: RedisUnavailable, backoff: Backoff) -> float:
        """No Redis: nothing to dispatch into, but the system works (workers claim from
        PostgreSQL), so this queuer stays ready and says why in its mode."""
        self.ready, self.not_ready_reason = True, ""
        if not self.postgres_only.enter(redis_unreachable(error)):
            log.debug("Redis still unreachable: %s", error)
        self.counts["errors"] += 1
        return min(backoff.next(), REDIS_RETRY_CAP)

    def _degraded(self, reason: str, error: BaseException, backoff: Backoff) -> float:
        self.ready, self.not_ready_reason = False, f"{reason}: {error}"
        delay = backoff.next()
        log.warning("%s (%s); retrying in %.1f s", reason, error, delay)
        self.counts["errors"] += 1
        return delay
