"""The schedules view: every periodic job's cron, time zone, next and last run, with
pause, resume and trigger buttons for operators, and the global rate and concurrency
limits with their use (docs/scheduling.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import acted, admin_of, render
from conveyor.web.pages.format import sentence


async def _context(request: Request) -> dict[str, object]:
    return {"schedules": await admin_of(request).schedules()}


async def _limits(request: Request) -> dict[str, object]:
    return {"limits": await admin_of(request).limits()}


@guarded("viewer")
async def schedules_page(request: Request, principal: Principal) -> Response:
    context = {**await _context(request), **await _limits(request), "nav": "schedules"}
    return render(request, "schedules.html", context, principal=principal)


@guarded("viewer")
async def schedule_rows(request: Request, principal: Principal) -> Response:
    return render(request, "_schedule_rows.html", await _context(request), principal=principal)


@guarded("viewer")
async def limit_rows(request: Request, principal: Principal) -> Response:
    return render(request, "_limit_rows.html", await _limits(request), principal=principal)


@guarded("operator")
async def pause(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    result = await admin_of(request).pause_schedule(name, actor=principal.actor)
    form = await request.form()
    return acted(request, form, sentence(result.message), default_next="/schedules", event={})


@guarded("operator")
async def resume(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    result = await admin_of(request).resume_schedule(name, actor=principal.actor)
    form = await request.form()
    return acted(request, form, sentence(result.message), default_next="/schedules", event={})


@guarded("operator")
async def trigger(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    result = await admin_of(request).trigger_schedule(name, actor=principal.actor)
    form = await request.form()
    return acted(request, form, sentence(result.message), default_next="/schedules", event={})


def routes() -> list[BaseRoute]:
    return [
        Route("/schedules", schedules_page, methods=["GET"]),
        Route("/fragments/schedules", schedule_rows, methods=["GET"]),
        Route("/fragments/limits", limit_rows, methods=["GET"]),
        Route("/schedules/{name}/pause", pause, methods=["POST"]),
        Route("/schedules/{name}/resume", resume, methods=["POST"]),
        Route("/schedules/{name}/trigger", trigger, methods=["POST"]),
    ]
