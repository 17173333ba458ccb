"""The charts page: throughput, failures and latency from the stored metrics history,
for the whole system and per queue, over 1 h, 24 h or 72 h (like Sidekiq's metrics
page), drawn on the server as SVG (web/charts.py)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin.history import WINDOWS, MetricsHistory
from conveyor.web.auth import Principal, guarded
from conveyor.web.charts import LATENCY, THROUGHPUT, line_chart
from conveyor.web.pages.common import admin_of, render

# Queues charted one by one below the system's: a page stays quick to read and to draw.
MOST_QUEUES = 24


def _step(history: MetricsHistory) -> timedelta:
    return timedelta(hours=1) if history.resolution == "hour" else timedelta(minutes=1)


def _charts(history: MetricsHistory, name: str) -> dict[str, object]:
    step = _step(history)
    return {
        "name": name,
        "totals": history.totals,
        "throughput": line_chart(
            history.points, THROUGHPUT, title=f"{name}: jobs per {history.resolution}", step=step
        ),
        "latency": line_chart(
            history.points,
            LATENCY,
            title=f"{name}: p95 run time and wait (worst {history.resolution})",
            unit="s",
            step=step,
        ),
    }


@guarded("viewer")
async def charts_page(request: Request, principal: Principal) -> Response:
    window = request.query_params.get("window", WINDOWS[0])
    queue = request.query_params.get("queue") or None
    admin = admin_of(request)
    overall = await admin.metrics_history(window, queue)
    sections = [_charts(overall, queue or "all queues")]
    names = [] if queue else overall.queues[:MOST_QUEUES]
    for name in names:
        sections.append(_charts(await admin.metrics_history(window, name), name))
    context = {
        "nav": "charts",
        "windows": WINDOWS,
        "window": overall.window,
        "queue": queue,
        "history": overall,
        "sections": sections,
        "more_queues": len(overall.queues) - len(names) if not queue else 0,
    }
    return render(request, "charts.html", context, principal=principal)


def routes() -> list[BaseRoute]:
    return [Route("/charts", charts_page, methods=["GET"])]
