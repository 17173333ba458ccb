"""The metrics history's statements: the leader's minute and hour rollups, their pruning,
and the series the admin reads (docs/metrics-history.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.scope import Scope
from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class RolledMinutes:
    """The minutes one rollup pass wrote: [rolled_from, rolled_to)."""

    rolled_from: datetime
    rolled_to: datetime
    rows_written: int


@dataclass(frozen=True)
class HistoryWindow:
    since: datetime  # the first bucket of the window
    until: datetime  # the bucket under way now (not rolled up yet)
    rolled_through: datetime | None  # every minute before it is rolled up; None: none yet
    queues: list[str]  # queues in scope with history in the window


@dataclass(frozen=True)
class HistoryRow:
    bucket: datetime
    enqueued: int
    completed: int
    failed: int
    dead: int
    retried: int
    rescued: int
    waiting: int | None
    running: int | None
    oldest_wait: float | None
    run_p50: float | None
    run_p95: float | None
    run_p99: float | None
    wait_p50: float | None
    wait_p95: float | None
    wait_p99: float | None


class MetricsHistoryStatements(StoreBase):
    async def roll_up_minutes(self, grace: float, catch_up: int) -> RolledMinutes | None:
        """Write the complete minutes not rolled up yet (at most the last `catch_up`, the
        newest one ended `grace` seconds ago); None when there was none."""
        params = {"grace": grace, "catch_up": catch_up}
        return await self._row("roll_up_minutes", params, RolledMinutes)

    async def roll_up_hours(self, rolled_from: datetime, rolled_to: datetime) -> int:
        """Rewrite the hour rows of every hour that overlaps the minutes just rolled up."""
        params = {"rolled_from": rolled_from, "rolled_to": rolled_to}
        return await self._execute("roll_up_hours", params)

    async def prune_metrics_minutes(self, retention: float) -> int:
        return await self._execute("prune_metrics_minutes", {"retention": retention})

    async def prune_metrics_hours(self, retention: float) -> int:
        return await self._execute("prune_metrics_hours", {"retention": retention})

    async def metrics_history_window(
        self, window: float, hourly: bool, scope: Scope
    ) -> HistoryWindow:
        params = {"window": window, "hourly": hourly, "queues": scope.params["queues"]}
        found = await self._row("metrics_history_window", params, HistoryWindow)
        if found is None:  # a SELECT without FROM always returns its row
            raise RuntimeError("metrics_history_window returned no row")
        return found

    async def metrics_history(
        self, since: datetime, hourly: bool, queue: str | None, scope: Scope
    ) -> list[HistoryRow]:
        """One row per bucket with history from `since` on, summed over the queues in
        scope (or `queue`)."""
        params = {
            "since": since,
            "hourly": hourly,
            "queue": queue,
            "queues": scope.params["queues"],
        }
        return await self._rows("metrics_history", params, HistoryRow)
