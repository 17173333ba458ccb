"""The metrics history's rollup pass, run by the leader queuer (docs/metrics-history.md).

Once a minute it writes, per queue and lane, what happened in every complete minute not
rolled up yet, from the rows themselves (job_logs and jobs), so the figures are the same
whichever process leads; then it rewrites the hour rows those minutes belong to. Both
statements run in one transaction: the hour rows never disagree with their minutes.
"""

from __future__ import annotations

import logging

from conveyor.config import Settings
from conveyor.store import Store
from conveyor.store.metrics_history import RolledMinutes

log = logging.getLogger("conveyor.rollup")

# A leader gap longer than this leaves the older minutes out (their counts would still be
# in job_logs, but one pass must stay cheap); a pass never writes more minutes than this.
CATCH_UP_MINUTES = 60


class MetricsRollup:
    """Roll finished minutes (and their hours) into the metrics history."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.interval = settings.metrics.rollup_interval
        # An attempt's job_logs row carries its statement's start time and becomes visible
        # at commit; no statement outlives the database deadline, so a minute that ended
        # longer ago than that is complete.
        self.grace = settings.liveness.database_deadline
        self.catch_up = CATCH_UP_MINUTES

    async def run_once(self) -> RolledMinutes | None:
        """Roll up what is due; None when no minute has ended since the last pass."""
        async with self.store.transaction() as tx:
            rolled = await tx.roll_up_minutes(self.grace, self.catch_up)
            if rolled is None:
                return None
            await tx.roll_up_hours(rolled.rolled_from, rolled.rolled_to)
        log.debug(
            "rolled up metrics from %s to %s (%d row(s))",
            rolled.rolled_from,
            rolled.rolled_to,
            rolled.rows_written,
        )
        return rolled
