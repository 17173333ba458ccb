"""One job in full (a modal over a list, or a page of its own), and the job actions."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin import AdminError
from conveyor.admin.replay import parse_payload_text
from conveyor.web.auth import Principal, guarded
from conveyor.web.pages.common import acted, admin_of, form_ids, is_htmx, render
from conveyor.web.pages.format import sentence

# Statuses an operator may retry or delete from the dashboard (the admin layer has the
# final word and explains a refusal; this only decides which buttons to draw).
RETRYABLE = frozenset({"dead", "cancelled", "completed", "retry_scheduled"})
CANCELLABLE = frozenset({"queued", "retry_scheduled", "dispatched", "running", "waiting"})


@guarded("viewer")
async def job_page(request: Request, principal: Principal) -> Response:
    detail = await admin_of(request).job_detail(request.path_params["id"])
    context = {
        "job": detail,
        "retryable": detail.status in RETRYABLE,
        "cancellable": detail.status in CANCELLABLE and not detail.cancel_requested,
        # Deleting a dead job is a dead-letter purge: admins only.
        "deletable": detail.status != "running"
        and (detail.status != "dead" or principal.can("admin")),
        # A dead job may be replayed with an edited payload (an edit box in the modal).
        "editable": detail.status == "dead",
        "queue_url": f"/queues/{quote(detail.queue, safe='')}",
        "nav": "queues",
    }
    # Opened from a list, htmx wants the part that goes into the modal (and the modal's
    # own refresh wants the same part); a link opened on its own gets a whole page.
    template = "_job.html" if is_htmx(request) else "job.html"
    return render(request, template, context, principal=principal)


@guarded("operator")
async def retry(request: Request, principal: Principal) -> Response:
    result = await admin_of(request).retry(request.path_params["id"], actor=principal.actor)
    form = await request.form()
    return acted(request, form, sentence(result.message), event={"job": str(result.job_id)})


@guarded("operator")
async def replay_edited(request: Request, principal: Principal) -> Response:
    form = await request.form()
    text = form.get("payload")
    if not isinstance(text, str) or not text.strip():
        raise AdminError("type the new payload (JSON) in the edit box first")
    result = await admin_of(request).replay_edited(
        request.path_params["id"], parse_payload_text(text), actor=principal.actor
    )
    return acted(request, form, sentence(result.message), event={"job": str(result.job_id)})


@guarded("operator")
async def cancel(request: Request, principal: Principal) -> Response:
    result = await admin_of(request).cancel(request.path_params["id"], actor=principal.actor)
    form = await request.form()
    return acted(request, form, sentence(result.message), event={"job": str(result.job_id)})


@guarded("operator")
async def delete(request: Request, principal: Principal) -> Response:
    result = await admin_of(request).delete(
        request.path_params["id"], actor=principal.actor, purge_dead=principal.can("admin")
    )
    form = await request.form()
    # The job's own page is gone now: its form names the queue page as `next`.
    return acted(request, form, sentence(result.message), event={"deleted": str(result.job_id)})


@guarded("operator")
async def bulk_retry(request: Request, principal: Principal) -> Response:
    form = await request.form()
    ids = form_ids(form)
    if not ids:
        return acted(request, form, "Tick the jobs to retry first.", kind="error")
    result = await admin_of(request).retry_jobs(ids, actor=principal.actor)
    return acted(request, form, sentence(result.message), event={"clear": True})


@guarded("operator")
async def bulk_delete(request: Request, principal: Principal) -> Response:
    form = await request.form()
    ids = form_ids(form)
    if not ids:
        return acted(request, form, "Tick the jobs to delete first.", kind="error")
    result = await admin_of(request).delete_jobs(
        ids, actor=principal.actor, purge_dead=principal.can("admin")
    )
    return acted(request, form, sentence(result.message), event={"clear": True})


def routes() -> list[BaseRoute]:
    return [
        # Fixed paths first: "retry" and "delete" are not job ids.
        Route("/jobs/retry", bulk_retry, methods=["POST"]),
        Route("/jobs/delete", bulk_delete, methods=["POST"]),
        Route("/jobs/{id}", job_page, methods=["GET"]),
        Route("/jobs/{id}/retry", retry, methods=["POST"]),
        Route("/jobs/{id}/replay", replay_edited, methods=["POST"]),
        Route("/jobs/{id}/cancel", cancel, methods=["POST"]),
        Route("/jobs/{id}/delete", delete, methods=["POST"]),
    ]
