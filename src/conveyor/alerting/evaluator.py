"""`AlertEvaluator`: the leader's pass that reads the history, applies the rules and
records the transitions (with their notifications) in one statement."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from conveyor import metrics
from conveyor.alerting.rules import Snapshot, evaluate, history_window
from conveyor.config import Settings
from conveyor.store import Store
from conveyor.store.alerts import AppliedAlerts, Finding

log = logging.getLogger("conveyor.alerts")
LOGGED_NAMES = 10  # a log line, not a report: the rest is one command away


class AlertEvaluator:
    """One `run_once()` per `alerts.evaluate_interval`, on the leader only.

    `leader_state` says what the leading queuer knows of its own Redis: (in postgres-only
    mode, on a backup Redis, the Redis in use); the workers report theirs in PostgreSQL."""

    PRUNE_LIMIT = 1000

    def __init__(
        self,
        store: Store,
        settings: Settings,
        leader_state: Callable[[], tuple[bool, bool, str]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.interval = settings.alerts.evaluate_interval
        self.leader_state = leader_state or (lambda: (False, False, ""))
        self.counts: Counter[str] = Counter()
        self._gauged: set[tuple[str, str, str]] = set()
        self.firing: list[Finding] = []

    async def snapshot(self) -> Snapshot:
        async with self.store.connection() as conn:
            store = self.store.bound_to(conn)
            minutes = await store.alert_metrics(history_window(self.settings))
            workers = await store.alert_live_workers(self.settings.worker.dead_after)
        postgres_only, on_backup, redis_in_use = self.leader_state()
        return Snapshot(minutes, workers, postgres_only, on_backup, redis_in_use)

    async def run_once(self) -> AppliedAlerts:
        findings = evaluate(self.settings, await self.snapshot())
        alerts = self.settings.alerts
        applied = await self.store.apply_alerts(
            findings, alerts.receiver_names(), alerts.repeat_interval
        )
        self.firing = findings
        await self.store.prune_alerts(self.settings.maintenance.retention, self.PRUNE_LIMIT)
        self.counts.update(fired=applied.fired, resolved=applied.resolved)
        self._set_gauges(findings)
        if applied.fired or applied.resolved:
            names = [f"{f.rule}({f.queue_name})" if f.queue_name else f.rule for f in findings]
            shown = ", ".join(names[:LOGGED_NAMES]) or "none"
            more = len(names) - LOGGED_NAMES
            log.warning(
                "alerts: %d fired, %d resolved; %d firing now: %s%s",
                applied.fired,
                applied.resolved,
                len(names),
                shown,
                f" and {more} more (conveyor admin alerts)" if more > 0 else "",
            )
        return applied

    def clear_gauges(self) -> None:
        """This process no longer leads: its figures would be stale, so they read 0."""
        self._set_gauges([])

    def _set_gauges(self, findings: list[Finding]) -> None:
        now = {(f.rule, f.queue_name, f.severity) for f in findings}
        # An alert that resolved must read 0, not its last value.
        for labels in self._gauged - now:
            metrics.ALERTS_FIRING.labels(*labels).set(0)
        for labels in now:
            metrics.ALERTS_FIRING.labels(*labels).set(1)
        self._gauged |= now
