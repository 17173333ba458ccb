"""The alerts view (firing alerts, their history and each notification's delivery), and
the banner every page loads while an alert fires."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin import AdminError
from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import admin_of, error_response, render

STATES = ("all", "firing", "resolved")
LIMIT = 200


async def _context(request: Request) -> dict[str, object]:
    state = request.query_params.get("state") or "all"
    alerts = await admin_of(request).alerts(state, LIMIT)
    return {
        "alerts": alerts,
        "state": state,
        "states": STATES,
        "firing": sum(1 for alert in alerts if alert.state == "firing"),
    }


@guarded("viewer")
async def alerts_page(request: Request, principal: Principal) -> Response:
    try:
        context = await _context(request)
    except AdminError as error:
        return error_response(request, 400, str(error))
    return render(request, "alerts.html", {**context, "nav": "alerts"}, principal=principal)


@guarded("viewer")
async def alert_rows(request: Request, principal: Principal) -> Response:
    try:
        context = await _context(request)
    except AdminError as error:
        return error_response(request, 400, str(error))
    return render(request, "_alert_rows.html", context, principal=principal)


@guarded("viewer")
async def alerts_banner(request: Request, principal: Principal) -> Response:
    """Loaded by every page after it renders, so no page waits for it: one index probe."""
    counts = await admin_of(request).firing_alerts()
    return render(request, "_alerts_banner.html", {"counts": counts}, principal=principal)


def routes() -> list[BaseRoute]:
    return [
        Route("/alerts", alerts_page, methods=["GET"]),
        Route("/fragments/alerts", alert_rows, methods=["GET"]),
        Route("/fragments/alerts-banner", alerts_banner, methods=["GET"]),
    ]
