"""The statements of batches (docs/batches.md): create, add jobs, seal, read.

Adding jobs is one plan: `add_to_batch` counts them into the open batch row (and holds
it) before `insert_jobs` writes them, in one transaction, so a sealed batch refuses them
before anything is written. The counting as jobs end, and the callbacks, are triggers
(migration 020): they run in whichever statement ends a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from conveyor.batch_info import BatchInfo, BatchJob
from conveyor.errors import BatchClosed, BatchNotFound
from conveyor.store.plans import AsyncPlans, Plan, SyncStatements, effect, rows_as

__all__ = ["BatchStatements", "SyncBatchStatements"]


def create_batch(
    batch_id: UUID, description: str | None, on_complete: str | None, on_success: str | None
) -> Plan[None]:
    """`on_complete`, `on_success`: the callback job records as JSON text, or None."""
    return effect(
        "create_batch",
        {
            "id": batch_id,
            "description": description,
            "on_complete": on_complete,
            "on_success": on_success,
        },
    )


def enqueue_into_batch(batch_id: UUID, jobs: str, ids: Sequence[UUID]) -> Plan[list[UUID]]:
    """Batch jobs carry no idempotency key, so every one of them is new."""
    counted = yield "add_to_batch", {"id": batch_id, "added": len(ids)}
    if not counted:
        found = yield "get_batch", {"id": batch_id}
        raise BatchClosed(batch_id) if found else BatchNotFound(batch_id)
    written = yield "insert_jobs", {"jobs": jobs}
    if len(written) != len(ids):
        raise RuntimeError(f"insert_jobs wrote {len(written)} of {len(ids)} batch jobs")
    return list(ids)


def seal_batch(batch_id: UUID) -> Plan[bool]:
    """True if this call sealed it (False: already sealed, or no such batch)."""
    rows = yield "seal_batch", {"id": batch_id}
    return bool(rows)


def get_batch(batch_id: UUID) -> Plan[BatchInfo | None]:
    found = yield from rows_as(BatchInfo, "get_batch", {"id": batch_id})
    return found[0] if found else None


class BatchStatements(AsyncPlans):
    async def create_batch(
        self,
        batch_id: UUID,
        description: str | None,
        on_complete: str | None,
        on_success: str | None,
    ) -> None:
        await self._run_plan(create_batch(batch_id, description, on_complete, on_success))

    async def enqueue_into_batch(
        self, batch_id: UUID, jobs: str, ids: Sequence[UUID]
    ) -> list[UUID]:
        return await self._run_plan(enqueue_into_batch(batch_id, jobs, ids), atomic=True)

    async def seal_batch(self, batch_id: UUID) -> bool:
        return await self._run_plan(seal_batch(batch_id))

    async def get_batch(self, batch_id: UUID) -> BatchInfo | None:
        return await self._run_plan(get_batch(batch_id))

    async def list_batches(self, limit: int, *, unfinished: bool = False) -> list[BatchInfo]:
        params = {"limit": limit, "unfinished": unfinished}
        return await self._rows("list_batches", params, BatchInfo)

    async def batch_jobs(self, batch_id: UUID, limit: int) -> list[BatchJob]:
        return await self._rows("batch_jobs", {"id": batch_id, "limit": limit}, BatchJob)

    async def prune_batches(self, retention: float) -> int:
        return await self._execute("prune_batches", {"retention": retention})


class SyncBatchStatements(SyncStatements):
    """`BatchStatements` for sync callers (the producer's part)."""

    def create_batch(
        self,
        batch_id: UUID,
        description: str | None,
        on_complete: str | None,
        on_success: str | None,
    ) -> None:
        self._run_plan(create_batch(batch_id, description, on_complete, on_success))

    def enqueue_into_batch(self, batch_id: UUID, jobs: str, ids: Sequence[UUID]) -> list[UUID]:
        return self._run_plan(enqueue_into_batch(batch_id, jobs, ids), atomic=True)

    def seal_batch(self, batch_id: UUID) -> bool:
        return self._run_plan(seal_batch(batch_id))

    def get_batch(self, batch_id: UUID) -> BatchInfo | None:
        return self._run_plan(get_batch(batch_id))
