"""The JSON admin API under /api: everything `conveyor admin` does, for scripts and tools.

One table of operations builds both the routes and the OpenAPI document. Each endpoint
checks credentials and role first (401/403 before anything is parsed), then turns the
path, query string and body into the admin layer's keyword arguments (400 on bad input),
then calls the admin layer, whose errors app.py maps to 400/404/409/503. Results are the
admin layer's `to_dict()` shape, the same one `conveyor admin --json` prints.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.admin import (
    AuditEntry,
    BulkResult,
    JobActionResult,
    JobDetail,
    JobSummary,
    Page,
    QueueActionResult,
    Stats,
    SystemHealth,
    WorkerInfo,
)
from conveyor.admin.history import MetricsHistory
from conveyor.admin.models import plain
from conveyor.admin.scaling import Scaling
from conveyor.web.api_alerts import ALERT_OPERATIONS
from conveyor.web.api_batches import BATCH_OPERATIONS
from conveyor.web.api_io import (
    AuditQuery,
    DeadRetryBody,
    HistoryQuery,
    IdsBody,
    JobsQuery,
    NoQuery,
    PeekQuery,
    PurgeBody,
    ReplayBody,
    json_response,
    parse_body,
    parse_query,
)
from conveyor.web.api_limits import LIMIT_OPERATIONS
from conveyor.web.api_openapi import Call, Operation, build_document
from conveyor.web.api_schedules import SCHEDULE_OPERATIONS
from conveyor.web.auth import Principal, guarded, scoped_admin

OPENAPI_PATH = "/openapi.json"

OPERATIONS: list[Operation] = [
    # -- reading (viewer) ---------------------------------------------------------------
    Operation(
        method="GET",
        path="/health",
        operation_id="getHealth",
        tag="health",
        summary="System health: Redis, PostgreSQL, queues, workers, performance.",
        role="viewer",
        response=SystemHealth,
        run=lambda c: c.admin.health(),
        uses_admin=False,  # health() reports outages in its body instead of raising
    ),
    Operation(
        method="GET",
        path="/stats",
        operation_id="getStats",
        tag="queues",
        summary="Per-queue figures and the workers' totals.",
        role="viewer",
        response=Stats,
        run=lambda c: c.admin.stats(),
    ),
    Operation(
        method="GET",
        path="/workers",
        operation_id="listWorkers",
        tag="workers",
        summary="Every registered worker, live ones first.",
        role="viewer",
        response=list[WorkerInfo],
        run=lambda c: c.admin.workers(),
    ),
    Operation(
        method="GET",
        path="/queues/{queue}/peek",
        operation_id="peekQueue",
        tag="queues",
        summary="The next jobs of a queue, in the order they would run.",
        role="viewer",
        response=list[JobSummary],
        run=lambda c: c.admin.peek(**c.args),
        query=PeekQuery,
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/jobs",
        operation_id="listJobs",
        tag="jobs",
        summary="Jobs, newest first, one page at a time (follow next_cursor).",
        role="viewer",
        response=Page[JobSummary],
        run=lambda c: c.admin.list_jobs(**c.args),
        query=JobsQuery,
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/jobs/{job_id}",
        operation_id="getJob",
        tag="jobs",
        summary="One job: payload, result, every attempt, and why it is waiting.",
        role="viewer",
        response=JobDetail,
        run=lambda c: c.admin.job_detail(**c.args),
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/metrics/history",
        operation_id="getMetricsHistory",
        tag="queues",
        summary="Throughput, failures, backlog and latency per minute (windows up to 72 h) "
        "or per hour, for one queue or all of them.",
        role="viewer",
        response=MetricsHistory,
        run=lambda c: c.admin.metrics_history(**c.args),
        query=HistoryQuery,
        errors=(403, 404),
    ),
    Operation(
        method="GET",
        path="/scaling",
        operation_id="getScaling",
        tag="workers",
        summary="Worker slots each queue needs now (Little's law on depth, arrival rate, run "
        "time and latency target), for KEDA or a Kubernetes HPA.",
        role="viewer",
        response=Scaling,
        run=lambda c: c.admin.scaling(),
    ),
    # -- operator actions -----------------------------------------------------------------
    Operation(
        method="POST",
        path="/jobs/{job_id}/retry",
        operation_id="retryJob",
        tag="jobs",
        summary="Run a dead, cancelled or completed job again now (attempts reset).",
        role="operator",
        response=JobActionResult,
        run=lambda c: c.admin.retry(actor=c.actor, **c.args),
        errors=(404, 409),
    ),
    Operation(
        method="POST",
        path="/jobs/{job_id}/cancel",
        operation_id="cancelJob",
        tag="jobs",
        summary="Cancel a waiting job, or ask a running one to stop.",
        role="operator",
        response=JobActionResult,
        run=lambda c: c.admin.cancel(actor=c.actor, **c.args),
        errors=(404, 409),
    ),
    Operation(
        method="DELETE",
        path="/jobs/{job_id}",
        operation_id="deleteJob",
        tag="jobs",
        summary="Delete a job that is not running (a dead one needs the admin role: that "
        "is a dead-letter purge).",
        role="operator",
        response=JobActionResult,
        run=lambda c: c.admin.delete(actor=c.actor, purge_dead=c.may_purge, **c.args),
        errors=(403, 404, 409),
    ),
    Operation(
        method="POST",
        path="/jobs/retry",
        operation_id="retryJobs",
        tag="jobs",
        summary="Retry many jobs; those that do not qualify are listed as skipped.",
        role="operator",
        response=BulkResult,
        run=lambda c: c.admin.retry_jobs(actor=c.actor, **c.args),
        body=IdsBody,
        body_required=True,
    ),
    Operation(
        method="POST",
        path="/jobs/delete",
        operation_id="deleteJobs",
        tag="jobs",
        summary="Delete many jobs; running and missing ones (and dead ones, below the admin "
        "role) are listed as skipped.",
        role="operator",
        response=BulkResult,
        run=lambda c: c.admin.delete_jobs(actor=c.actor, purge_dead=c.may_purge, **c.args),
        body=IdsBody,
        body_required=True,
    ),
    Operation(
        method="POST",
        path="/queues/{queue}/pause",
        operation_id="pauseQueue",
        tag="queues",
        summary="Pause a queue: nothing more is handed out; dispatched jobs are taken back.",
        role="operator",
        response=QueueActionResult,
        run=lambda c: c.admin.pause(actor=c.actor, **c.args),
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/queues/{queue}/resume",
        operation_id="resumeQueue",
        tag="queues",
        summary="Resume a paused queue.",
        role="operator",
        response=QueueActionResult,
        run=lambda c: c.admin.resume(actor=c.actor, **c.args),
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/dead/retry",
        operation_id="retryDead",
        tag="dead letters",
        summary="Replay dead jobs (all, or of a queue, a task or given ids) as new attempts.",
        role="operator",
        response=BulkResult,
        run=lambda c: c.admin.retry_dead(actor=c.actor, **c.args),
        body=DeadRetryBody,
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/jobs/{job_id}/replay",
        operation_id="replayJob",
        tag="dead letters",
        summary="Replay a dead job with an edited payload (checked as an enqueue checks it; "
        "the audit log keeps the payload before and after, encrypted fields masked).",
        role="operator",
        response=JobActionResult,
        run=lambda c: c.admin.replay_edited(actor=c.actor, **c.args),
        body=ReplayBody,
        body_required=True,
        errors=(404, 409),
    ),
    # -- admin actions ----------------------------------------------------------------------
    Operation(
        method="POST",
        path="/dead/purge",
        operation_id="purgeDead",
        tag="dead letters",
        summary="Delete dead jobs (all, or of one queue). A dry run unless dry_run is false.",
        role="admin",
        response=BulkResult,
        run=lambda c: c.admin.purge_dead(actor=c.actor, **c.args),
        body=PurgeBody,
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/queues/{queue}/clear-failed",
        operation_id="clearFailed",
        tag="dead letters",
        summary="Delete the dead jobs of one queue (the dashboard's clear failed).",
        role="admin",
        response=BulkResult,
        run=lambda c: c.admin.clear_failed(actor=c.actor, **c.args),
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/audit",
        operation_id="getAuditLog",
        tag="audit",
        summary="The audit log: every change made through the admin layer, newest first.",
        role="admin",
        response=list[AuditEntry],
        run=lambda c: c.admin.audit_log(**c.args),
        query=AuditQuery,
    ),
    *ALERT_OPERATIONS,
    *SCHEDULE_OPERATIONS,
    *LIMIT_OPERATIONS,
    *BATCH_OPERATIONS,
    # -- the document itself -------------------------------------------------------------------
    Operation(
        method="GET",
        path=OPENAPI_PATH,
        operation_id="getOpenApi",
        tag="meta",
        summary="This OpenAPI 3.1 document.",
        role=None,
        response=dict[str, Any],
        uses_admin=False,
    ),
]


@functools.cache
def openapi_document() -> bytes:
    # Built on first request, not at import: schema generation is not free and the CLI
    # imports this module without ever serving it.
    return orjson.dumps(build_document(OPERATIONS))


async def serve_openapi(request: Request) -> Response:
    parse_query(request, NoQuery)  # unknown parameters are refused here as everywhere
    return Response(openapi_document(), media_type="application/json")


def endpoint(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    run = operation.run
    if run is None or operation.role is None:
        raise ValueError(f"{operation.operation_id}: an API operation needs a role and a run")

    async def handle(request: Request, principal: Principal) -> Response:
        args: dict[str, Any] = dict(request.path_params)
        args.update(parse_query(request, operation.query))
        if operation.body is not None:
            args.update(await parse_body(request, operation.body))
        call = Call(
            admin=scoped_admin(request),
            actor=principal.actor,
            args=args,
            may_purge=principal.can("admin"),
        )
        return json_response(plain(await run(call)))

    handle.__name__ = handle.__qualname__ = operation.operation_id
    return guarded(operation.role)(handle)


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = []
    for operation in OPERATIONS:
        handler = serve_openapi if operation.path == OPENAPI_PATH else endpoint(operation)
        table.append(
            Route(
                operation.path,
                handler,
                methods=[operation.method],
                name=f"api:{operation.operation_id}",
            )
        )
    return table
