"""The batches view (docs/batches.md): the newest batches with progress bars, and one
batch with its jobs, each opening the job modal. A batch may hold jobs of several tenants
and queues, so scoped users are refused, as on the charts page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import admin_of, render


@guarded("viewer")
async def batches_page(request: Request, principal: Principal) -> Response:
    unfinished = request.query_params.get("unfinished") == "1"
    batches = await admin_of(request).batches(unfinished=unfinished)
    context = {"nav": "batches", "batches": batches, "unfinished": unfinished}
    return render(request, "batches.html", context, principal=principal)


@guarded("viewer")
async def batch_rows(request: Request, principal: Principal) -> Response:
    unfinished = request.query_params.get("unfinished") == "1"
    batches = await admin_of(request).batches(unfinished=unfinished)
    context = {"batches": batches, "unfinished": unfinished}
    return render(request, "_batch_rows.html", context, principal=principal)


@guarded("viewer")
async def batch_page(request: Request, principal: Principal) -> Response:
    detail = await admin_of(request).batch(request.path_params["batch_id"])
    context = {"nav": "batches", "detail": detail, "b": detail.batch}
    return render(request, "batch.html", context, principal=principal)


def routes() -> list[BaseRoute]:
    return [
        Route("/batches", batches_page, methods=["GET"]),
        Route("/fragments/batches", batch_rows, methods=["GET"]),
        Route("/batches/{batch_id}", batch_page, methods=["GET"]),
    ]
