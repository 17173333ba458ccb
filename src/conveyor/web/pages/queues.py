"""The queue list (the overview), one queue's jobs, and the queue actions."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin import AdminError, AdminNotFound, AdminUnavailable, Stats
from conveyor.vocabulary import LANES
from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import acted, admin_of, history_of, render
from conveyor.web.pages.filters import LANE_CHOICES, STATUS_CHOICES, JobFilters
from conveyor.web.pages.format import sentence


async def _stats(request: Request) -> Stats:
    stats = await admin_of(request).stats()
    history_of(request).record(stats)
    return stats


async def _overview_context(request: Request, stats: Stats) -> dict[str, object]:
    history = history_of(request)
    mode, mode_reason = await admin_of(request).mode()
    return {
        "stats": stats,
        "mode": mode,
        "mode_reason": mode_reason,
        "lanes": LANES,
        "series": {queue.name: history.values(queue.name) for queue in stats.queues},
    }


@guarded("viewer")
async def overview(request: Request, principal: Principal) -> Response:
    stats = await _stats(request)
    context = {**await _overview_context(request, stats), "nav": "queues"}
    return render(request, "queues.html", context, principal=principal)


@guarded("viewer")
async def overview_rows(request: Request, principal: Principal) -> Response:
    stats = await _stats(request)
    context = await _overview_context(request, stats)
    return render(request, "_overview.html", context, principal=principal)


def _selected(request: Request) -> list[str]:
    # The boxes ticked when the refresh was sent: they come back ticked.
    return [value for value in request.query_params.getlist("ids") if value][:1000]


async def _rows_context(request: Request, name: str) -> tuple[dict[str, object], int]:
    filters = JobFilters.parse(request.query_params, queue=name)
    context: dict[str, object] = {
        "queue_name": name,
        "filters": filters,
        "selected": _selected(request),
        "page": None,
        "problem": filters.problem,
        "rows_url": f"/queues/{quote(name, safe='')}/rows",
        "dead_view": False,
    }
    if filters.problem:
        return context, 400
    try:
        context["page"] = await filters.fetch(admin_of(request))
    except (AdminUnavailable, AdminNotFound):
        raise  # the app's handler answers these (503, 404)
    except AdminError as error:
        context["problem"] = str(error)
        return context, 400
    return context, 200


@guarded("viewer")
async def queue_page(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    context, status = await _rows_context(request, name)
    stats = await _stats(request)
    context.update(
        {
            "queue": stats.queue(name),
            "timestamp": stats.timestamp,
            "lanes": LANES,
            "status_choices": STATUS_CHOICES,
            "lane_choices": LANE_CHOICES,
            "nav": "queues",
        }
    )
    return render(request, "queue.html", context, principal=principal, status=status)


@guarded("viewer")
async def queue_rows(request: Request, principal: Principal) -> Response:
    context, status = await _rows_context(request, request.path_params["name"])
    return render(request, "_job_rows.html", context, principal=principal, status=status)


@guarded("viewer")
async def queue_summary(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    stats = await _stats(request)
    context = {"queue": stats.queue(name), "queue_name": name, "lanes": LANES}
    return render(request, "_queue_summary.html", context, principal=principal)


@guarded("operator")
async def pause(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    result = await admin_of(request).pause(name, actor=principal.actor)
    return acted(request, await request.form(), sentence(result.message), event={})


@guarded("operator")
async def resume(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    result = await admin_of(request).resume(name, actor=principal.actor)
    return acted(request, await request.form(), sentence(result.message), event={})


@guarded("admin")  # it deletes dead jobs: the same right as a purge (the runbook's admin:dlq)
async def clear_failed(request: Request, principal: Principal) -> Response:
    name = request.path_params["name"]
    result = await admin_of(request).clear_failed(name, actor=principal.actor)
    return acted(request, await request.form(), sentence(result.message), event={})


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, methods=["GET"]),
        Route("/fragments/queues", overview_rows, methods=["GET"]),
        Route("/queues/{name}", queue_page, methods=["GET"]),
        Route("/queues/{name}/rows", queue_rows, methods=["GET"]),
        Route("/queues/{name}/summary", queue_summary, methods=["GET"]),
        Route("/queues/{name}/pause", pause, methods=["POST"]),
        Route("/queues/{name}/resume", resume, methods=["POST"]),
        Route("/queues/{name}/clear-failed", clear_failed, methods=["POST"]),
    ]
