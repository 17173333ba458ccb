"""The alerting statements: the rules' history, the evaluation's transitions, the
notification outbox and the admin's view of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.scope import Scope
from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class MetricsMinute:
    queue_name: str
    lane: str
    age_seconds: float  # since the minute started
    waiting: int | None  # NULL for a minute rolled up late: not measured
    completed: int
    failed: int
    dead: int
    oldest_wait: float | None


@dataclass(frozen=True)
class LiveWorker:
    id: str
    queues: list[str]
    postgres_only: bool
    breakers_open: list[str]


@dataclass(frozen=True)
class Finding:
    """A rule that holds now, for one queue ("" for the whole system)."""

    rule: str
    queue_name: str
    severity: str
    summary: str
    value: float
    threshold: float


@dataclass(frozen=True)
class AppliedAlerts:
    fired: int
    resolved: int
    repeated: int
    notifications: int


@dataclass(frozen=True)
class ClaimedNotification:
    id: int
    attempts: int
    transition: str
    receiver: str
    alert_id: int
    rule: str
    queue_name: str
    severity: str
    state: str
    summary: str
    value: float | None
    threshold: float | None
    fired_at: datetime
    resolved_at: datetime | None
    claimed_epoch: int  # unix seconds, PostgreSQL's clock


@dataclass(frozen=True)
class FiringCounts:
    firing: int
    critical: int


class AlertStatements(StoreBase):
    async def alert_metrics(self, window: float) -> list[MetricsMinute]:
        return await self._rows("alert_metrics", {"window": window}, MetricsMinute)

    async def alert_live_workers(self, dead_after: float) -> list[LiveWorker]:
        return await self._rows("alert_live_workers", {"dead_after": dead_after}, LiveWorker)

    async def apply_alerts(
        self, findings: Sequence[Finding], receivers: Sequence[str], repeat_interval: float
    ) -> AppliedAlerts:
        """Fire, refresh, repeat and resolve in one statement (see alerts.sql)."""
        params = {
            "rules": [f.rule for f in findings],
            "queues": [f.queue_name for f in findings],
            "severities": [f.severity for f in findings],
            "summaries": [f.summary for f in findings],
            "values": [f.value for f in findings],
            "thresholds": [f.threshold for f in findings],
            "receivers": list(receivers),
            "repeat": repeat_interval,
        }
        row = await self._row("apply_alerts", params, AppliedAlerts)
        assert row is not None  # noqa: S101 - an aggregate always returns its row
        return row

    async def claim_alert_notifications(
        self, limit: int, lease: float
    ) -> list[ClaimedNotification]:
        params = {"limit": limit, "lease": lease}
        return await self._rows("claim_alert_notifications", params, ClaimedNotification)

    async def mark_alert_notification_delivered(self, id: int, attempts: int) -> bool:
        params = {"id": id, "attempts": attempts}
        return await self._execute("mark_alert_notification_delivered", params) == 1

    async def reschedule_alert_notification(
        self,
        id: int,
        attempts: int,
        error: str,
        *,
        backoff: float,
        cap: float,
        max_attempts: int,
    ) -> bool:
        params = {
            "id": id,
            "attempts": attempts,
            "error": error,
            "backoff": backoff,
            "cap": cap,
            "max_attempts": max_attempts,
        }
        return await self._execute("reschedule_alert_notification", params) == 1

    async def prune_alerts(self, retention: float, limit: int) -> int:
        return await self._execute("prune_alerts", {"retention": retention, "limit": limit})

    async def admin_alerts(
        self, state: str | None, limit: int, scope: Scope
    ) -> list[dict[str, Any]]:
        params = {"state": state, "limit": limit, **scope.params}
        return await self._dicts("admin_alerts", params)

    async def firing_alert_counts(self, scope: Scope) -> FiringCounts:
        row = await self._row("firing_alert_counts", scope.params, FiringCounts)
        assert row is not None  # noqa: S101 - an aggregate always returns its row
        return row
