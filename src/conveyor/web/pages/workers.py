"""The workers view: who is connected, what they serve, and who has gone silent."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin import WorkerInfo
from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import admin_of, render, settings_of

LATE_BEATS = 3  # heartbeats missed before a live worker is shown as late


def worker_state(worker: WorkerInfo, heartbeat_interval: float) -> str:
    """stopped (said goodbye), silent (no heartbeat within worker.dead_after and no
    goodbye: crashed, frozen or cut off), late (still counted alive but behind), or ok."""
    if worker.stopped is not None:
        return "stopped"
    if not worker.alive:
        return "silent"
    if worker.heartbeat_age_seconds > LATE_BEATS * heartbeat_interval:
        return "late"
    return "ok"


async def _context(request: Request) -> dict[str, object]:
    workers = await admin_of(request).workers()
    interval = settings_of(request).worker.heartbeat_interval
    states = {worker.id: worker_state(worker, interval) for worker in workers}
    return {
        "workers": workers,
        "states": states,
        "silent": sum(1 for state in states.values() if state == "silent"),
        "alive": sum(1 for worker in workers if worker.alive),
    }


@guarded("viewer")
async def workers_page(request: Request, principal: Principal) -> Response:
    context = {**await _context(request), "nav": "workers"}
    # The supervisors' latest scaling decisions (only for unrestricted callers).
    context["autoscale_decisions"] = await admin_of(request).autoscale_decisions()
    return render(request, "workers.html", context, principal=principal)


@guarded("viewer")
async def workers_rows(request: Request, principal: Principal) -> Response:
    return render(request, "_worker_rows.html", await _context(request), principal=principal)


def routes() -> list[BaseRoute]:
    return [
        Route("/workers", workers_page, methods=["GET"]),
        Route("/fragments/workers", workers_rows, methods=["GET"]),
    ]
