"""The batches' part of the JSON API (see docs/batches.md): the newest batches with their
progress, and one batch with its jobs. Read-only; refused for scoped credentials."""

from __future__ import annotations

from pydantic import Field

from conveyor.admin.batches import DEFAULT_BATCH_JOBS, DEFAULT_BATCHES, BatchDetail, BatchSummary
from conveyor.web.api_io import Limit, Query
from conveyor.web.api_openapi import Operation


class BatchesQuery(Query):
    limit: Limit = Field(DEFAULT_BATCHES, description="How many batches, newest first (1-1000).")
    unfinished: bool = Field(False, description="Only batches whose callbacks are still to come.")


class BatchQuery(Query):
    jobs_limit: Limit = Field(
        DEFAULT_BATCH_JOBS, alias="jobs", description="How many of its jobs to list (1-1000)."
    )


BATCH_OPERATIONS: list[Operation] = [
    Operation(
        method="GET",
        path="/batches",
        operation_id="listBatches",
        tag="batches",
        summary="The newest batches with their progress (total, pending, succeeded, failed).",
        role="viewer",
        response=list[BatchSummary],
        run=lambda c: c.admin.batches(**c.args),
        query=BatchesQuery,
        errors=(403,),
    ),
    Operation(
        method="GET",
        path="/batches/{batch_id}",
        operation_id="getBatch",
        tag="batches",
        summary="One batch: its progress, callbacks and jobs in enqueue order.",
        role="viewer",
        response=BatchDetail,
        run=lambda c: c.admin.batch(**c.args),
        query=BatchQuery,
        errors=(403, 404),
    ),
]
