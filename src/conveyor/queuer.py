"""The queuer: moves ready jobs from PostgreSQL into the Redis lanes.

It wakes on NOTIFY from the insert trigger (with a short poll as a safety net, which also
picks up scheduled jobs and retries as they come due), dispatches in batches with one
statement, pushes every batch with one Lua call, and notices a wiped Redis from the
epoch key. It also runs the maintenance passes while it holds the leader lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from conveyor import metrics
from conveyor.config import Settings
from conveyor.lanes import REDIS_ERRORS, EpochLost, Keys, Lanes, lane_for_priority, redis_client
from conveyor.maintenance import (
    Pruner,
    QueueGauges,
    Reconciler,
    Rescuer,
    Schedule,
    leader_lock_id,
)
from conveyor.retrying import Backoff
from conveyor.store import load_queries
from conveyor.store.connect import OPERATIONAL_ERRORS, async_pool, connect_kwargs

log = logging.getLogger("conveyor.queuer")


class Queuer:
    def __init__(self, settings: Settings, *, maintenance: bool = True) -> None:
        self.settings = settings
        self.queries = load_queries(settings.database.schema_name)
        self.keys = Keys(settings.redis.key_prefix)
        self.channel = f"{settings.database.schema_name}_jobs"
        self.run_maintenance = maintenance
        self.counts: Counter[str] = Counter()
        self.ready = False
        self.not_ready_reason = "starting"
        self.is_leader = False
        self.epoch: str | None = None
        self._wake = asyncio.Event()
        self._eviction_checked = False
        self._pool: AsyncConnectionPool | None = None
        self._redis: aioredis.Redis | None = None
        self._lanes: Lanes | None = None
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._schedule: Schedule | None = None
        self.rescuer: Rescuer | None = None
        self.reconciler: Reconciler | None = None
        self.pruner: Pruner | None = None

    # -- set-up --------------------------------------------------------------------------

    async def start(self) -> None:
        db = self.settings.database
        self._pool = async_pool(db.url, "queuer", 4, db.connect_timeout)
        await self._pool.open(wait=False)
        self._redis = redis_client(self.settings)
        self._lanes = Lanes(self._redis, self.keys)
        self.rescuer = Rescuer(self._pool, self.queries, self.settings)
        self.reconciler = Reconciler(self._pool, self.queries, self._lanes, self.settings)
        self.pruner = Pruner(self._pool, self.queries, self.settings)

    @property
    def pool(self) -> AsyncConnectionPool:
        assert self._pool is not None, "call start() first"  # noqa: S101
        return self._pool

    @property
    def lanes(self) -> Lanes:
        assert self._lanes is not None, "call start() first"  # noqa: S101
        return self._lanes

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        if self._pool is not None:
            await self._pool.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def _listen(self) -> None:
        """(Re)open the LISTEN connection; it also holds the maintenance leader lock."""
        if self._listener is not None and not self._listener.closed:
            return
        db = self.settings.database
        kwargs = connect_kwargs("queuer-listen", db.connect_timeout)
        self._listener = await psycopg.AsyncConnection.connect(db.url, **kwargs)
        self.is_leader = False
        await self._listener.execute(f'LISTEN "{self.channel}"'.encode())
        asyncio.get_running_loop().create_task(self._forward_notifications(self._listener))

    async def _forward_notifications(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            async for _ in conn.notifies():
                self._wake.set()
        except OPERATIONAL_ERRORS:
            if self._listener is conn:  # not when we closed it ourselves
                log.warning("lost the LISTEN connection; will reconnect")
        finally:
            self.is_leader = False
            self._wake.set()

    async def _try_lead(self) -> None:
        if not self.run_maintenance or self.is_leader or self._listener is None:
            return
        lock = leader_lock_id(self.settings.database.schema_name)
        row = await (
            await self._listener.execute(b"SELECT pg_try_advisory_lock(%s)", (lock,))
        ).fetchone()
        self.is_leader = bool(row and row[0])
        if self.is_leader:
            log.info("this queuer runs maintenance (rescue, reconcile, prune)")
            assert self.rescuer and self.reconciler and self.pruner  # noqa: S101
            gauges = QueueGauges(self.pool, self.queries)
            self._schedule = Schedule([self.rescuer, self.reconciler, self.pruner, gauges])

    # -- the epoch: detecting a wiped Redis ----------------------------------------------

    async def sync_epoch(self) -> None:
        """Adopt Redis's epoch; if Redis has none (wiped, or new), rebuild its state."""
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

    async def rebuild_redis(self) -> int:
        """Redis lost everything: re-dispatch every dispatched job and restore pauses."""
        async with self.pool.connection() as conn:
            now = (await (await conn.execute(self.queries["db_now"])).fetchone() or [None])[0]
            cur = await conn.execute(self.queries["undispatch_all_before"], {"before": now})
            reset = cur.rowcount
            paused = [
                row[0]
                for row in await (await conn.execute(self.queries["paused_queues"])).fetchall()
            ]
        await self.lanes.set_paused(paused)
        self.counts["redis_rebuilds"] += 1
        metrics.REDIS_REBUILDS.inc()
        log.warning("Redis was empty: %d dispatched job(s) queued again for dispatch", reset)
        self._wake.set()
        return reset

    # -- dispatch ------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """One pass: mark a batch dispatched in PostgreSQL, then push it; return the count."""
        if self.epoch is None:
            await self.sync_epoch()
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    self.queries["dispatch_ready"],
                    {
                        "buffer": self.settings.queuer.buffer_per_queue,
                        "batch": self.settings.queuer.batch_size,
                    },
                )
            ).fetchall()
        if not rows:
            return 0
        groups: dict[str, list[str]] = defaultdict(list)
        # Highest urgency first so each lane pops in priority-then-age order.
        for job_id, queue, priority in sorted(rows, key=lambda row: row[2]):
            groups[self.keys.lane(queue, lane_for_priority(priority))].append(str(job_id))
        try:
            assert self.epoch is not None  # noqa: S101
            await self.lanes.push(self.epoch, groups)
        except (EpochLost, *REDIS_ERRORS):
            await self._undispatch([row[0] for row in rows])
            raise
        self.counts["dispatched"] += len(rows)
        for queue, count in Counter(row[1] for row in rows).items():
            metrics.DISPATCHED.labels(queue).inc(count)
        return len(rows)

    async def _undispatch(self, ids: list[Any]) -> None:
        try:
            async with self.pool.connection() as conn:
                await conn.execute(self.queries["undispatch"], {"ids": ids})
        except OPERATIONAL_ERRORS:
            log.warning("could not undo a failed push; the reconciler will")

    async def _backlog(self) -> bool:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(self.queries["has_backlog"])).fetchone()
        return bool(row and row[0])

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if self._pool is None:
            await self.start()
        backoff = Backoff(initial=0.1, cap=5.0)
        stop_task = asyncio.ensure_future(stop.wait())
        maintenance = asyncio.ensure_future(self._maintenance_loop(stop))
        try:
            while not stop.is_set():
                try:
                    wait = await self._iteration()
                    backoff.reset()
                    self.ready, self.not_ready_reason = True, ""
                except EpochLost:
                    self.epoch = None
                    log.warning("Redis lost its contents; rebuilding from PostgreSQL")
                    continue
                except REDIS_ERRORS as error:
                    wait = self._degraded("Redis unreachable", error, backoff)
                except OPERATIONAL_ERRORS as error:
                    wait = self._degraded("PostgreSQL unreachable", error, backoff)
                    await self._drop_listener()
                self._wake.clear()
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {waker, stop_task}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
        finally:
            stop_task.cancel()
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            await self.close()

    async def _maintenance_loop(self, stop: asyncio.Event) -> None:
        """Rescue, reconcile and prune on their own clock, so a long prune never delays
        dispatch. Only the leader runs them; the others check again every second."""
        backoff = Backoff(initial=0.5, cap=10.0)
        while not stop.is_set():
            wait = 1.0
            if self.is_leader and self._schedule is not None:
                try:
                    before = self.counts_snapshot()
                    await self._schedule.run_due()
                    if self.counts_snapshot() != before:
                        self._wake.set()  # rescued or reconciled jobs are ready now
                    wait = min(1.0, self._schedule.seconds_until_due())
                    backoff.reset()
                except (*REDIS_ERRORS, *OPERATIONAL_ERRORS) as error:
                    wait = backoff.next()
                    log.warning("maintenance pass failed (%s); retrying in %.1f s", error, wait)
            await asyncio.sleep(max(wait, 0.01))

    def counts_snapshot(self) -> tuple[int, ...]:
        passes = (self.rescuer, self.reconciler)
        return tuple(sum(p.counts.values()) for p in passes if p is not None)

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

    async def _iteration(self) -> float:
        if not self._eviction_checked:
            await self._warn_about_eviction()
        await self._listen()
        await self._try_lead()
        await self.sync_epoch()
        moved = await self.dispatch_once()
        queuer = self.settings.queuer
        if moved >= queuer.batch_size:
            return 0.0
        if moved or await self._backlog():
            return queuer.backlog_poll_interval
        return queuer.poll_interval

    def _degraded(self, reason: str, error: BaseException, backoff: Backoff) -> float:
        self.ready, self.not_ready_reason = False, f"{reason}: {error}"
        delay = backoff.next()
        log.warning("%s (%s); retrying in %.1f s", reason, error, delay)
        self.counts["errors"] += 1
        return delay

    async def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                await self._listener.close()
            finally:
                self._listener = None
                self.is_leader = False
