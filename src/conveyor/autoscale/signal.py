"""`conveyor_desired_workers{queue}`: the scaling signal as a Prometheus gauge.

The web process (`conveyor web`) serves it on /metrics, computed by the admin layer from
PostgreSQL (the same figures as GET /api/scaling) and reused for
`autoscale.signal_cache` seconds, so a scrape every few seconds costs one statement at
most per cache period. Other processes have no admin layer and export nothing here: one
series per queue, from one place, which is what KEDA's Prometheus scaler or an HPA on an
external metric expects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor import metrics

if TYPE_CHECKING:
    from conveyor.admin import Admin

log = logging.getLogger("conveyor.autoscale")
GAUGE_NAME = "conveyor_desired_workers"


class DesiredWorkers(Collector):
    def __init__(self) -> None:
        self.per_queue: dict[str, int] | None = None
        self.computed = -float("inf")
        self.lock = asyncio.Lock()

    def collect(self) -> Iterator[Metric]:
        if self.per_queue is None:
            return
        gauge = GaugeMetricFamily(
            GAUGE_NAME,
            "Worker processes each queue needs now (GET /api/scaling: Little's law on "
            "arrival rate, average run time, depth and latency target).",
            labels=("queue",),
        )
        for queue, workers in sorted(self.per_queue.items()):
            gauge.add_metric([queue], workers)
        yield gauge

    async def refresh(self, admin: Admin) -> None:
        """Recompute when the cached answer is older than autoscale.signal_cache. An outage
        keeps the last answer: the scrape still succeeds and the log says why."""
        from conveyor.admin import AdminUnavailable

        async with self.lock:
            if time.monotonic() - self.computed < admin.settings.autoscale.signal_cache:
                return
            try:
                scaling = await admin.scaling()
            except AdminUnavailable as error:
                log.warning("conveyor_desired_workers not refreshed: %s", error)
                return
            self.per_queue = {queue.queue: queue.desired_workers for queue in scaling.queues}
            self.computed = time.monotonic()


DESIRED_WORKERS = DesiredWorkers()
metrics.register_local(DESIRED_WORKERS)
