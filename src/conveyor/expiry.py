"""The Expirer: a maintenance pass that ends queued jobs past their deadline as `expired`.

A worker never starts such a job (its claim expires it instead), so this pass is not what
keeps the promise; it keeps a deadline from leaving a job in the queue, counted as waiting,
until some worker happens to pop it. The leader queuer runs it every
`maintenance.expire_interval`.
"""

from __future__ import annotations

import logging
from collections import Counter

from conveyor import metrics, watchdog
from conveyor.config import Settings
from conveyor.store import Store
from conveyor.store.upkeep import ExpiredJob

log = logging.getLogger("conveyor.maintenance")


class Expirer:
    BATCH = 1000

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.interval = settings.maintenance.expire_interval
        self.counts: Counter[str] = Counter()

    async def run_once(self, max_batches: int = 100) -> list[ExpiredJob]:
        expired: list[ExpiredJob] = []
        for _ in range(max_batches):
            watchdog.beat("queuer.maintenance")  # a long backlog is progress
            batch = await self.store.expire_queued_jobs(self.BATCH)
            expired.extend(batch)
            if len(batch) < self.BATCH:
                break
        if not expired:
            return expired
        totals = Counter((job.queue_name, job.task) for job in expired)
        for (queue, task), count in totals.items():
            metrics.EXPIRED.labels(queue, task).inc(count)
        self.counts["expired"] += len(expired)
        log.info("expired %d queued job(s) past their deadline", len(expired))
        return expired
