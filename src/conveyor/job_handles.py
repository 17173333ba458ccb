"""Looking a job up and cancelling it from the application object: `get_job`, `cancel`
and their async forms, mixed into `Conveyor`."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from conveyor.errors import JobNotFound
from conveyor.ids import parse_job_id
from conveyor.jobs import Job

if TYPE_CHECKING:
    from conveyor.orm import AsyncTransactionHandle, TransactionHandle
    from conveyor.store.producer import CancelOutcome, ProducerStatements, SyncProducer

T = TypeVar("T")


class JobHandles:
    """Mixed into `Conveyor`, which provides the producers declared below."""

    if TYPE_CHECKING:

        def _producer(self, connection: TransactionHandle | None) -> SyncProducer: ...

        async def _aproducer(
            self, connection: AsyncTransactionHandle | None
        ) -> ProducerStatements: ...

    def get_job(self, job_id: UUID | str) -> Job:
        """The job's current state; JobNotFound if there is none (or it was pruned)."""
        identifier = parse_job_id(job_id)
        return _found(identifier, self._producer(None).get_job(identifier))

    async def aget_job(self, job_id: UUID | str) -> Job:
        identifier = parse_job_id(job_id)
        return _found(identifier, await (await self._aproducer(None)).get_job(identifier))

    def cancel(self, job_id: UUID | str, reason: str = "cancelled by request") -> CancelOutcome:
        """Cancel a job: 'cancelled' (it was waiting), 'requested' (it is running and will be
        told), or 'finished' (nothing to do). JobNotFound if there is no such job."""
        identifier = parse_job_id(job_id)
        return _found(identifier, self._producer(None).cancel_job(identifier, reason))

    async def acancel(
        self, job_id: UUID | str, reason: str = "cancelled by request"
    ) -> CancelOutcome:
        identifier = parse_job_id(job_id)
        statements = await self._aproducer(None)
        return _found(identifier, await statements.cancel_job(identifier, reason))


def _found(job_id: UUID, value: T | None) -> T:
    if value is None:
        raise JobNotFound(job_id)
    return value
