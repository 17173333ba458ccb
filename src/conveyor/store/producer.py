"""The producer's statements: enqueue, look up and cancel jobs.

Each operation is one plan (see `store.plans`), run by `ProducerStatements` on the async
pool or by `SyncProducer` on a sync one; bound to the caller's connection, either runs
inside the caller's transaction, so an enqueued job exists if and only if it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from uuid import UUID

from conveyor.errors import EnqueueError
from conveyor.jobs import Job
from conveyor.store.batches import BatchStatements, SyncBatchStatements
from conveyor.store.dedup import DedupRow, Reseal, enqueue_deduplicated
from conveyor.store.plans import AsyncConn, Plan, SyncConn

CancelOutcome = Literal["cancelled", "requested", "finished"]

__all__ = ["AsyncConn", "CancelOutcome", "ProducerStatements", "SyncConn", "SyncProducer"]


def insert_jobs(
    jobs: str,
    ids: Sequence[UUID],
    keys: Sequence[str | None],
    parents: Sequence[UUID] = (),
) -> Plan[list[UUID]]:
    """Write every job of `jobs` (the JSON array `insert_jobs` reads; `ids` and `keys` are
    its jobs' ids and idempotency keys, in order, `parents` every id their `depends_on`
    name); return the ids in input order, where a key already taken gives the id of the
    job that holds it. An unknown parent is an EnqueueError, and nothing is written."""
    rows = yield "insert_jobs", {"jobs": jobs}
    if len(rows) == len(ids):  # the common case: every job is new, one statement
        return list(ids)
    if parents:
        missing = yield "missing_parents", {"ids": list(parents)}
        if missing:
            unknown = ", ".join(str(job_id) for job_id in missing.column("id"))
            raise EnqueueError(f"depends_on names no job: {unknown}; nothing was enqueued")
    inserted = set(rows.column("id"))
    given = [key for key in keys if key is not None]
    found = yield "job_ids_by_idempotency_key", {"keys": given}
    existing: dict[str, UUID] = {row["idempotency_key"]: row["id"] for row in found.dicts()}
    return [
        job_id if job_id in inserted or key is None else existing[key]
        for job_id, key in zip(ids, keys, strict=True)
    ]


# One insert_jobs step of a workflow: (jobs, ids, keys, parents) as `insert_jobs` takes them.
InsertStep = tuple[str, Sequence[UUID], Sequence[str | None], Sequence[UUID]]


def insert_workflow(batches: Sequence[InsertStep]) -> Plan[list[list[UUID]]]:
    """Several `insert_jobs` in order, in one transaction: a later batch may depend on the
    jobs of an earlier one (a chain's next step, a chord's callback)."""
    written = []
    for jobs, ids, keys, parents in batches:
        written.append((yield from insert_jobs(jobs, ids, keys, parents)))
    return written


def get_job(job_id: UUID) -> Plan[Job | None]:
    rows = yield "get_job", {"id": job_id}
    row = rows.first()
    return None if row is None else Job.from_row(row)


def cancel_job(job_id: UUID, reason: str) -> Plan[CancelOutcome | None]:
    """'cancelled' (it was waiting), 'requested' (it runs and will be told), 'finished'
    (nothing to do), or None when there is no such job."""
    rows = yield "cancel_job", {"id": job_id, "reason": reason}
    counts = rows.first() or {}  # the statement always returns one row
    if counts.get("cancelled"):
        return "cancelled"
    if counts.get("requested"):
        return "requested"
    found = yield "get_job", {"id": job_id}
    return "finished" if found else None


class ProducerStatements(BatchStatements):
    async def insert_jobs(
        self,
        jobs: str,
        ids: Sequence[UUID],
        keys: Sequence[str | None],
        parents: Sequence[UUID] = (),
    ) -> list[UUID]:
        return await self._run_plan(insert_jobs(jobs, ids, keys, parents), atomic=True)

    async def insert_workflow(self, batches: Sequence[InsertStep]) -> list[list[UUID]]:
        return await self._run_plan(insert_workflow(batches), atomic=True)

    async def enqueue_deduplicated(
        self, records: Sequence[dict[str, Any]], keys: Sequence[str], reseal: Reseal | None
    ) -> list[DedupRow]:
        plan = enqueue_deduplicated(self.schema, records, keys, reseal)
        return await self._run_plan(plan, atomic=True)

    async def get_job(self, job_id: UUID) -> Job | None:
        return await self._run_plan(get_job(job_id))

    async def cancel_job(self, job_id: UUID, reason: str) -> CancelOutcome | None:
        return await self._run_plan(cancel_job(job_id, reason))


class SyncProducer(SyncBatchStatements):
    """`ProducerStatements` for sync callers."""

    def insert_jobs(
        self,
        jobs: str,
        ids: Sequence[UUID],
        keys: Sequence[str | None],
        parents: Sequence[UUID] = (),
    ) -> list[UUID]:
        return self._run_plan(insert_jobs(jobs, ids, keys, parents), atomic=True)

    def insert_workflow(self, batches: Sequence[InsertStep]) -> list[list[UUID]]:
        return self._run_plan(insert_workflow(batches), atomic=True)

    def enqueue_deduplicated(
        self, records: Sequence[dict[str, Any]], keys: Sequence[str], reseal: Reseal | None
    ) -> list[DedupRow]:
        plan = enqueue_deduplicated(self.schema, records, keys, reseal)
        return self._run_plan(plan, atomic=True)

    def get_job(self, job_id: UUID) -> Job | None:
        return self._run_plan(get_job(job_id))

    def cancel_job(self, job_id: UUID, reason: str) -> CancelOutcome | None:
        return self._run_plan(cancel_job(job_id, reason))
