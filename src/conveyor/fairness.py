"""Fairness between tenants within a queue (`queues.<name>.fairness: tenant`).

For such a queue the queuer does not take the most urgent ready jobs of the queue as a
whole (dispatch_ready), which would hand a tenant's 100,000-job campaign the whole buffer;
it takes them round-robin across the tenants with queued jobs (dispatch_fair): each
tenant gets an equal share of the free room, and the ids are pushed round by round, so
the lane alternates between tenants. Jobs without a tenant are one more tenant.

The Redis buffer is what bounds the promise: a tenant's new job waits behind the ids
already dispatched, so fair queues get their own, small buffer
(`queuer.fair_buffer_per_queue`).
"""

from __future__ import annotations

from conveyor.config import Settings
from conveyor.store.fairness import FairJob, FairnessStatements


class TenantFairness:
    def __init__(self, settings: Settings, store: FairnessStatements) -> None:
        self.store = store
        self.queues = settings.fair_queues()
        self.buffer = settings.queuer.fair_buffer_per_queue
        self.batch = settings.queuer.batch_size

    async def dispatch(self) -> list[FairJob]:
        """Dispatch the fair queues' ready jobs, in push order; none without fair queues."""
        if not self.queues:
            return []
        return await self.store.dispatch_fair(self.queues, self.buffer, self.batch)
