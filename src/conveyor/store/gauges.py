"""The statements behind the queue gauges of /metrics (see `conveyor.queue_gauges`)."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class QueueRunning:
    queue_name: str
    running: int


@dataclass(frozen=True)
class QueueWorkers:
    queue_name: str
    live_workers: int


class GaugeStatements(StoreBase):
    async def running_jobs_by_queue(self) -> list[QueueRunning]:
        return await self._rows("running_jobs_by_queue", {}, QueueRunning)

    async def live_workers_by_queue(self, dead_after: float) -> list[QueueWorkers]:
        """Workers whose heartbeat is younger than `dead_after` seconds, per queue served."""
        params = {"dead_after": dead_after}
        return await self._rows("live_workers_by_queue", params, QueueWorkers)
