"""The alerts' part of the JSON API: `GET /api/alerts` (see docs/alerts.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from conveyor.admin.alerts import AlertInfo
from conveyor.web.api_io import Limit, Query
from conveyor.web.api_openapi import Operation


class AlertsQuery(Query):
    state: Literal["firing", "resolved", "all"] = Field(
        "all", description="firing, resolved or all (firing ones come first)."
    )
    limit: Limit = Field(100, description="Alerts, firing first, then newest first (1-1000).")


ALERT_OPERATIONS: list[Operation] = [
    Operation(
        method="GET",
        path="/alerts",
        operation_id="listAlerts",
        tag="alerts",
        summary="Alerts with their notifications: firing ones first, then the history.",
        role="viewer",
        response=list[AlertInfo],
        run=lambda c: c.admin.alerts(**c.args),
        query=AlertsQuery,
    ),
]
