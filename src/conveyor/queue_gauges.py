"""Queue gauges for /metrics, read from PostgreSQL by whichever process is scraped.

queue_length, oldest_job_age_seconds (and _by_lane), jobs_running, workers_live,
queue_target_seconds, lane_target_seconds, limit_in_flight and limit_waiting describe the
queues and their limits, not the process that reports them, so every process that serves
/metrics (queuer, worker supervisor, web) reads them from PostgreSQL itself: any scrape
target gives the same figures, whichever queuer leads and even when no queuer runs at all.

They are read when a scrape asks for them, at most once per `REFRESH_SECONDS` (however
many scrapers there are), on a connection of their own that is closed right after, so a
process nobody scrapes never reads them and nothing is held between scrapes. A scrape
waits at most `READ_TIMEOUT_SECONDS` for PostgreSQL. When PostgreSQL does not answer,
scrapes get the last figures for up to `DROP_AFTER_SECONDS`; after that the queue gauges
are left out of the output rather than report old figures as current, and
`queue_gauges_age_seconds` (always exported once a read succeeded) says how old they are.

These gauges never go into prometheus_client's registry or its multiprocess files: the
collector is added to the exposition of the process that serves /metrics, so a worker
supervisor reports them once, not once per child.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric

from conveyor.config import Settings
from conveyor.errors import ConveyorError, reason
from conveyor.limited_dispatch import MAX_GROUPS
from conveyor.limits import LimitBook, scope
from conveyor.store import Store
from conveyor.vocabulary import LANES, SCOPE_KEY

log = logging.getLogger("conveyor.queue_gauges")

REFRESH_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 2.0
DROP_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class QueueFigures:
    """One reading of the queues, taken at `taken` (this process's monotonic clock)."""

    taken: float
    waiting: dict[tuple[str, str], int] = field(default_factory=dict)
    lane_oldest_age: dict[tuple[str, str], float] = field(default_factory=dict)
    oldest_age: dict[str, float] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    live_workers: dict[str, int] = field(default_factory=dict)
    # Per limit row (scope): jobs in flight and ready jobs held back; see read_limit_figures.
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)

    def queues(self) -> set[str]:
        waiting = {queue for queue, _ in self.waiting}
        return waiting | set(self.oldest_age) | set(self.running) | set(self.live_workers)


async def read_figures(store: Store, dead_after: float, taken: float) -> QueueFigures:
    depths = await store.queue_depths()
    running = await store.running_jobs_by_queue()
    workers = await store.live_workers_by_queue(dead_after)
    oldest: dict[str, float] = {}
    lane_oldest: dict[tuple[str, str], float] = {}
    for row in depths:
        # A run_at set by a clock slightly ahead of PostgreSQL's must not read as negative.
        age = max(0.0, row.oldest_age or 0.0)
        lane_oldest[(row.queue_name, row.lane)] = age
        oldest[row.queue_name] = max(oldest.get(row.queue_name, 0.0), age)
    return QueueFigures(
        taken=taken,
        waiting={(row.queue_name, row.lane): row.waiting for row in depths},
        lane_oldest_age=lane_oldest,
        oldest_age=oldest,
        running={row.queue_name: row.running for row in running},
        live_workers={row.queue_name: row.live_workers for row in workers},
        limits=await read_limit_figures(store),
    )


async def read_limit_figures(store: Store) -> dict[str, tuple[int, int]]:
    """(in flight, waiting) per row of flow_limits. A key pattern reports the sum over the
    keys it governs, so 1,000 keys under "*" make one series, not 1,000."""
    rows = await store.flow_limits()
    if not rows:
        return {}
    book = LimitBook(row.limit() for row in rows)
    names = [limit.scope for limit in book.by_scope.values()]
    keys: set[str] = set()
    if book.patterns:
        keys = {group.limit_key for group in await store.limited_groups(MAX_GROUPS)}
        keys |= set(await store.in_flight_limit_keys(MAX_GROUPS))
    governed = {
        scope(SCOPE_KEY, key): pattern.scope
        for key in keys - {""}
        if scope(SCOPE_KEY, key) not in book.by_scope
        and (pattern := book.pattern_for(key)) is not None
    }
    asked = names + sorted(governed)
    flight = {
        row.scope: row.in_flight for row in await store.limit_usage(asked, [None] * len(asked))
    }
    held = {row.scope: row.waiting for row in await store.limit_waiting(asked, book.limited_queues)}
    figures = {name: (flight.get(name, 0), held.get(name, 0)) for name in names}
    for governing in book.patterns:
        figures[governing.scope] = (0, 0)
    for name, pattern_scope in governed.items():
        in_flight, waiting = figures[pattern_scope]
        figures[pattern_scope] = (in_flight + flight.get(name, 0), waiting + held.get(name, 0))
    return figures


class QueueGauges:
    """A prometheus_client collector of the queue gauges, refreshed by `refresh()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        drop_after: float = DROP_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self.drop_after = drop_after
        self.clock = clock
        self.figures: QueueFigures | None = None
        # Queues seen since this process started: one that empties reads 0, not nothing.
        self.known: set[str] = set()
        self._attempted = -refresh_seconds
        self._lock: asyncio.Lock | None = None
        self._failing = False

    async def refresh(self) -> None:
        """Read the queues if the last attempt is older than the refresh interval;
        concurrent scrapes share one read. Never raises: a failure is logged once per
        outage, and the figures age."""
        if self.clock() - self._attempted < self.refresh_seconds:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.clock() - self._attempted < self.refresh_seconds:
                return
            self._attempted = self.clock()
            try:
                figures = await self._read()
            except (ConveyorError, TimeoutError) as error:
                if not self._failing:
                    log.warning("queue gauges not refreshed: %s", reason(error) or "timed out")
                self._failing = True
                return
            if self._failing:
                log.info("queue gauges refreshed again")
            self._failing = False
            self.figures = figures
            self.known |= figures.queues()

    async def _read(self) -> QueueFigures:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            async with Store.connected(self.settings, "metrics", READ_TIMEOUT_SECONDS) as store:
                return await read_figures(store, self.settings.worker.dead_after, self.clock())

    def describe(self) -> list[Metric]:
        # Without this, registering the collector would call collect() (and read nothing).
        return []

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        if figures is None:
            return
        age = max(0.0, self.clock() - figures.taken)
        stale = GaugeMetricFamily(
            "queue_gauges_age_seconds",
            "Seconds since this process last read the queue gauges from PostgreSQL; the "
            "queue gauges are left out once this passes 60.",
        )
        stale.add_metric([], age)
        yield stale
        if age > self.drop_after:
            return
        yield from self._queue_families(figures)

    def _queue_families(self, figures: QueueFigures) -> Iterator[Metric]:
        queues = sorted(self.known)
        length = GaugeMetricFamily(
            "queue_length",
            "Jobs waiting to start (ready in PostgreSQL or buffered in Redis), by lane.",
            labels=("queue", "lane"),
        )
        oldest = GaugeMetricFamily(
            "oldest_job_age_seconds",
            "How long the oldest waiting job has been ready (0 when none waits).",
            labels=("queue",),
        )
        lane_oldest = GaugeMetricFamily(
            "oldest_job_age_by_lane_seconds",
            "How long the oldest waiting job of the lane has been ready (0 when none waits).",
            labels=("queue", "lane"),
        )
        running = GaugeMetricFamily(
            "jobs_running", "Jobs running now, on any worker.", labels=("queue",)
        )
        workers = GaugeMetricFamily(
            "workers_live",
            "Live workers serving the queue (heartbeat within worker.dead_after, not stopped).",
            labels=("queue",),
        )
        target = GaugeMetricFamily(
            "queue_target_seconds",
            "The queue's configured latency target (queues.<name>.target, else "
            "thresholds.default_target).",
            labels=("queue",),
        )
        lane_target = GaugeMetricFamily(
            "lane_target_seconds",
            "The lane's latency target (queues.<name>:<lane>.target, else the queue's).",
            labels=("queue", "lane"),
        )
        for queue in queues:
            for lane in LANES:
                length.add_metric([queue, lane], figures.waiting.get((queue, lane), 0))
                lane_oldest.add_metric([queue, lane], figures.lane_oldest_age.get((queue, lane), 0))
                lane_target.add_metric([queue, lane], self.settings.queue_target(queue, lane))
            oldest.add_metric([queue], figures.oldest_age.get(queue, 0.0))
            running.add_metric([queue], figures.running.get(queue, 0))
            workers.add_metric([queue], figures.live_workers.get(queue, 0))
            target.add_metric([queue], self.settings.queue_target(queue))
        yield from (length, oldest, lane_oldest, running, workers, target, lane_target)
        in_flight = GaugeMetricFamily(
            "limit_in_flight",
            "Jobs dispatched or running under a global limit, per limit (a key pattern sums "
            "the keys it governs).",
            labels=("scope",),
        )
        waiting = GaugeMetricFamily(
            "limit_waiting",
            "Ready jobs held back in PostgreSQL by a global limit, per limit.",
            labels=("scope",),
        )
        for name, (flight, held) in sorted(figures.limits.items()):
            in_flight.add_metric([name], flight)
            waiting.add_metric([name], held)
        yield from (in_flight, waiting)
