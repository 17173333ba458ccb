"""How a worker gets its next jobs: popped from the Redis lanes and claimed, or, while no
Redis answers, claimed straight from PostgreSQL (postgres-only mode).

The switch: Redis has failed every fetch for `worker.postgres_only_after` (a blip or a
restart should not move every worker onto PostgreSQL), then each fetch claims up to the
free slots with one statement. When nothing is ready it waits for the insert trigger's
NOTIFY (a LISTEN session of its own), or `worker.postgres_only_poll` at most: retries
and scheduled jobs come due without a notification. Meanwhile Redis is pinged in the
background at most once a second; the first answer sends the worker back to the lanes.
Both paths claim with the same fencing as always, so a job taken directly whose id still
sits in a lane is dropped when popped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from typing import Literal

from conveyor import metrics
from conveyor.config import Settings
from conveyor.errors import RedisUnavailable
from conveyor.lanes import Lanes, lane_order
from conveyor.postgres_only import PostgresOnlyMode, redis_unreachable
from conveyor.store.listen import Listener
from conveyor.store.work import ClaimedJob, WorkStatements
from conveyor.weights import weighted_order
from conveyor.worker.breaker import Breakers

log = logging.getLogger("conveyor.worker")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Redis is pinged no more often than this while the worker claims from PostgreSQL.
REDIS_PROBE_INTERVAL = 1.0


class Fetcher:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        queues: list[str],
        order: Literal["queue", "priority"],
        store: WorkStatements,
        lanes: Lanes,
        breakers: Breakers,
        counts: Counter[str],
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.queues = queues
        self.order = order
        # Weighted queues: a fresh weighted random queue order on every fetch (weights.py).
        self.weights = dict(weights or {})
        self.store = store
        self.lanes = lanes
        self.breakers = breakers
        self.counts = counts
        self.mode = PostgresOnlyMode(
            f"worker {worker_id}", "claiming jobs straight from PostgreSQL"
        )
        self._paused: set[str] = set()
        self._paused_checked = 0.0
        self._failing_since: float | None = None
        self._watch: asyncio.Task[None] | None = None
        self._redis_back = False
        # Set by a NOTIFY of new jobs, or by Redis answering: either is worth a look now.
        self._ready = asyncio.Event()
        self._listener = Listener(settings, self._ready.set, lead=False, role="worker-listen")

    async def fetch(self, free: int) -> list[ClaimedJob]:
        """Claim up to `free` jobs (possibly none, after waiting a little)."""
        if self.mode.active:
            if not self._redis_back:
                return await self._direct(free)
            await self._stop_direct()
            self.mode.leave("Redis answers again; popping jobs from the lanes")
        try:
            jobs = await self._from_lanes(free)
        except RedisUnavailable as error:
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
            if now - self._failing_since < self.settings.worker.postgres_only_after:
                raise
            self.mode.enter(redis_unreachable(error))
            self._redis_back = False
            self._watch = asyncio.ensure_future(self._watch_redis())
            return await self._direct(free)
        self._failing_since = None
        return jobs

    async def close(self) -> None:
        await self._stop_direct()
        self.mode.leave("the worker is stopping")

    # -- the lanes -----------------------------------------------------------------------

    def _serving(self) -> list[str]:
        return [queue for queue in self.queues if not self.breakers.blocked(queue)]

    async def _lane_keys(self) -> list[str]:
        now = time.monotonic()
        if now - self._paused_checked > 0.5:
            self._paused = await self.lanes.paused()
            self._paused_checked = now
        queues = [queue for queue in self._serving() if queue not in self._paused]
        if self.weights:
            queues = weighted_order(queues, self.weights)
        return lane_order(queues, self.lanes.keys, self.order)

    async def _from_lanes(self, free: int) -> list[ClaimedJob]:
        keys = await self._lane_keys()
        if not keys:  # every queue we serve is paused
            await asyncio.sleep(self.settings.worker.fetch_timeout)
            return []
        popped = await self.lanes.pop(keys, free, self.settings.worker.fetch_timeout)
        if not popped:
            return []
        ids = [item for item in popped if UUID_TEXT.match(item)]
        if len(ids) < len(popped):
            # Only Conveyor writes lanes; anything else is dropped rather than allowed to
            # fail the claim of the good ids beside it.
            log.warning("dropped %d lane entries that are not job ids", len(popped) - len(ids))
        jobs = await self.store.claim_jobs(ids, self.worker_id, self.settings.worker.lease)
        self.counts["claimed"] += len(jobs)
        if len(jobs) < len(popped):
            # Duplicates, cancelled or deleted rows, paused queues, jobs claimed directly
            # while Redis was away, jobs past their deadline (the claim expired them):
            # never run, just counted.
            self.counts["dropped"] += len(popped) - len(jobs)
            metrics.DROPPED.inc(len(popped) - len(jobs))
            log.info("dropped %d popped id(s) that could not be claimed", len(popped) - len(jobs))
        return jobs

    # -- postgres-only -------------------------------------------------------------------

    async def _direct(self, free: int) -> list[ClaimedJob]:
        self.mode.tick()
        worker = self.settings.worker
        await self._listener.ensure_open()
        # Cleared before the claim: a job inserted while it runs wakes the wait below.
        self._ready.clear()
        queues = self._serving()
        jobs = await self.store.claim_ready_direct(queues, free, self.worker_id, worker.lease)
        self.counts["claimed"] += len(jobs)
        self.counts["claimed_directly"] += len(jobs)
        if not jobs and not self._redis_back:
            # Nothing ready (or every queue paused or broken): no Redis to block on, so
            # wait for an insert, or look again after a short sleep; never a hot loop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), worker.postgres_only_poll)
        return jobs

    async def _watch_redis(self) -> None:
        """Ping Redis once a second until it answers. The ping runs beside the claims, so
        a Redis that hangs instead of refusing slows no claim."""
        while True:
            await asyncio.sleep(REDIS_PROBE_INTERVAL)
            try:
                await self.lanes.ping()
            except RedisUnavailable as error:
                self.mode.enter(redis_unreachable(error))  # the latest reason
                continue
            except Exception:
                # The watch must outlive an odd failure, or the worker never goes back.
                log.exception("unexpected error pinging Redis")
                continue
            self._redis_back = True
            self._ready.set()
            return

    async def _stop_direct(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await self._listener.close()
