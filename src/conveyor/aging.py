"""The low lane's aging: a low-priority job that has waited longer than its queue's
`low_lane_aging` is served as a normal one, so a normal lane that never empties cannot
starve it.

Two places apply the rule. The queuer dispatches a job that is already old enough into
the normal lane (`lane_with_aging`). A job that aged while sitting in the low lane is
moved by `LowLaneAging`, a leader pass, to the pop end of the normal lane: it is the
next job the normal lane gives. Its priority is not changed in PostgreSQL: only which
Redis lane holds it.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from conveyor import metrics
from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.store import Store
from conveyor.store.dispatch import DispatchedJob
from conveyor.vocabulary import LOW, NORMAL, LaneName, lane_for_priority

log = logging.getLogger("conveyor.aging")


def lane_with_aging(job: DispatchedJob, settings: Settings) -> LaneName:
    """The lane a job is pushed to: its priority's, or normal for a low job past its
    queue's aging time."""
    lane = lane_for_priority(job.priority)
    if lane != LOW:
        return lane
    aging = settings.low_lane_aging(job.queue_name)
    return NORMAL if aging is not None and job.waited >= aging else lane


def in_push_order(
    jobs: list[DispatchedJob], settings: Settings
) -> list[tuple[DispatchedJob, LaneName]]:
    """Each job with its lane, in the order each lane should pop them: aged low jobs first
    (they have waited longest), then by priority (highest urgency first)."""
    placed = [(job, lane_with_aging(job, settings)) for job in jobs]
    return sorted(
        placed, key=lambda pair: (pair[1] == lane_for_priority(pair[0].priority), pair[0].priority)
    )


class LowLaneAging:
    """Moves dispatched low-lane jobs past their aging time to the normal lane."""

    # Ids moved per pass at most: the pass runs again a second later.
    BATCH = 1000

    def __init__(self, store: Store, lanes: Lanes, settings: Settings) -> None:
        self.store = store
        self.lanes = lanes
        self.settings = settings
        self.interval = 1.0
        self.counts: Counter[str] = Counter()
        self.agings = {
            name: entry.low_lane_aging
            for name, entry in settings.queues.items()
            if entry.low_lane_aging is not None
        }

    @property
    def enabled(self) -> bool:
        return self.settings.queuer.low_lane_aging is not None or bool(self.agings)

    async def run_once(self) -> int:
        if not self.enabled:
            return 0
        default = self.settings.queuer.low_lane_aging
        aged = await self.store.aged_in_low_lane(self.agings, default, self.BATCH)
        by_queue: dict[str, list[str]] = defaultdict(list)
        for job in aged:
            by_queue[job.queue_name].append(str(job.id))
        moved = 0
        for queue, ids in by_queue.items():
            count = await self.lanes.promote(queue, ids)
            if count:
                metrics.LOW_LANE_AGED.labels(queue).inc(count)
            moved += count
        if moved:
            self.counts["moved"] += moved
            log.info("moved %d low-lane job(s) past their aging time to the normal lane", moved)
        return moved
