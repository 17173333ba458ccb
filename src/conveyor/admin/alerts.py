"""Alerts for the dashboard, the API and the CLI: firing ones first, then the history,
each with the state of its notifications.

A queue-scoped caller sees the alerts of its queues only, and none of the system-wide ones
(postgres_only, redis_failover); a tenant-scoped caller sees none, since every alert is
about figures that count all tenants' jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from conveyor.admin.base import AdminBase, check_count
from conveyor.admin.errors import AdminError
from conveyor.admin.models import Model
from conveyor.vocabulary import ALERT_FIRING, ALERT_RESOLVED

AlertState = Literal["firing", "resolved", "all"]
DeliveryState = Literal["delivered", "pending", "retrying", "gave_up"]


@dataclass(frozen=True, kw_only=True)
class AlertNotification(Model):
    transition: str  # fired, resolved, repeat
    receiver: str
    delivery: DeliveryState
    attempts: int
    created: datetime
    delivered_at: datetime | None
    gave_up_at: datetime | None
    next_attempt_at: datetime | None  # when the next attempt is due (pending, retrying)
    last_error: str | None

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> AlertNotification:
        def when(key: str) -> datetime | None:
            value = entry.get(key)
            return datetime.fromisoformat(value) if value else None

        delivered, gave_up = when("delivered_at"), when("gave_up_at")
        delivery: DeliveryState = (
            "delivered"
            if delivered
            else "gave_up"
            if gave_up
            else "retrying"
            if entry["attempts"]
            else "pending"
        )
        created = when("created")
        assert created is not None  # noqa: S101 - a NOT NULL column
        return cls(
            transition=entry["transition"],
            receiver=entry["receiver"],
            delivery=delivery,
            attempts=entry["attempts"],
            created=created,
            delivered_at=delivered,
            gave_up_at=gave_up,
            next_attempt_at=None if delivered or gave_up else when("next_attempt_at"),
            last_error=entry.get("last_error"),
        )


@dataclass(frozen=True, kw_only=True)
class AlertInfo(Model):
    id: int
    rule: str
    queue: str | None  # None: about the whole system
    severity: str  # warning, critical
    state: str  # firing, resolved
    summary: str
    value: float | None
    threshold: float | None
    fired_at: datetime
    resolved_at: datetime | None
    last_notified_at: datetime
    duration_seconds: float  # firing for, or fired for
    notifications: list[AlertNotification] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlertInfo:
        return cls(
            id=row["id"],
            rule=row["rule"],
            queue=row["queue_name"] or None,
            severity=row["severity"],
            state=row["state"],
            summary=row["summary"],
            value=row["value"],
            threshold=row["threshold"],
            fired_at=row["fired_at"],
            resolved_at=row["resolved_at"],
            last_notified_at=row["last_notified_at"],
            duration_seconds=row["duration_seconds"],
            notifications=[AlertNotification.from_json(n) for n in row["notifications"]],
        )


@dataclass(frozen=True, kw_only=True)
class FiringAlerts(Model):
    firing: int
    critical: int


_STATES: dict[str, str | None] = {
    "firing": ALERT_FIRING,
    "resolved": ALERT_RESOLVED,
    "all": None,
}


class AlertsMixin(AdminBase):
    async def alerts(self, state: str = "all", limit: int = 100) -> list[AlertInfo]:
        """Alerts in `state` (firing, resolved or all), firing first, then newest first."""
        if state not in _STATES:
            raise AdminError(f"state must be one of {', '.join(_STATES)}, not {state!r}")
        limit = check_count(limit, "limit")
        rows = await self.read(self.store.admin_alerts(_STATES[state], limit, self.scope))
        return [AlertInfo.from_row(row) for row in rows]

    async def firing_alerts(self) -> FiringAlerts:
        """How many alerts fire now (the dashboard's banner): one index probe."""
        counts = await self.read(self.store.firing_alert_counts(self.scope))
        return FiringAlerts(firing=counts.firing, critical=counts.critical)
