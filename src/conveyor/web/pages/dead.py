"""The dead-letter view: find and read dead jobs, replay them, purge them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin import AdminError, AdminNotFound, AdminUnavailable
from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import acted, admin_of, form_ids, render
from conveyor.web.pages.filters import JobFilters
from conveyor.web.pages.format import sentence


def _queue_param(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


async def _rows_context(request: Request) -> tuple[dict[str, object], int]:
    queue = _queue_param(request.query_params.get("queue"))
    filters = JobFilters.parse(request.query_params, queue=queue, queue_in_query=True)
    context: dict[str, object] = {
        "queue_name": queue or "",
        "filters": filters,
        "selected": [v for v in request.query_params.getlist("ids") if v][:1000],
        "page": None,
        "problem": filters.problem,
        "rows_url": "/dead/rows",
        "dead_view": True,
    }
    if filters.problem:
        return context, 400
    try:
        context["page"] = await filters.fetch(admin_of(request), status="dead")
    except (AdminUnavailable, AdminNotFound):
        raise  # the app's handler answers these (503, 404)
    except AdminError as error:
        context["problem"] = str(error)
        return context, 400
    return context, 200


@guarded("viewer")
async def dead_page(request: Request, principal: Principal) -> Response:
    context, status = await _rows_context(request)
    stats = await admin_of(request).stats()
    queue = context["queue_name"]
    dead_counts = {q.name: q.dead for q in stats.queues if q.dead}
    context.update(
        {
            "dead_counts": dead_counts,
            "dead_total": dead_counts.get(str(queue), 0) if queue else sum(dead_counts.values()),
            "queue_names": sorted({q.name for q in stats.queues}),
            "nav": "dead",
        }
    )
    return render(request, "dead.html", context, principal=principal, status=status)


@guarded("viewer")
async def dead_rows(request: Request, principal: Principal) -> Response:
    context, status = await _rows_context(request)
    return render(request, "_job_rows.html", context, principal=principal, status=status)


@guarded("operator")
async def replay(request: Request, principal: Principal) -> Response:
    form = await request.form()
    admin = admin_of(request)
    if form.get("scope") == "all":
        queue = _queue_param(form.get("queue"))
        result = await admin.retry_dead(principal.actor, queue=queue)
    else:
        ids = form_ids(form)
        if not ids:
            return acted(request, form, "Tick the dead jobs to replay first.", kind="error")
        result = await admin.retry_dead(principal.actor, ids=ids)
    message = sentence(result.message)
    return acted(request, form, message, default_next="/dead", event={"clear": True})


@guarded("admin")
async def purge(request: Request, principal: Principal) -> Response:
    form = await request.form()
    queue = _queue_param(form.get("queue"))
    result = await admin_of(request).purge_dead(principal.actor, queue=queue, dry_run=False)
    message = sentence(result.message)
    return acted(request, form, message, default_next="/dead", event={"clear": True})


def routes() -> list[BaseRoute]:
    return [
        Route("/dead", dead_page, methods=["GET"]),
        Route("/dead/rows", dead_rows, methods=["GET"]),
        Route("/dead/replay", replay, methods=["POST"]),
        Route("/dead/purge", purge, methods=["POST"]),
    ]
