"""Looking a job up, waiting for it and cancelling it from the application object:
`get_job`, `wait`, `cancel` and their async forms, mixed into `Conveyor`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from conveyor.errors import JobFailed, JobNotFound, ResultNotStored
from conveyor.ids import parse_job_id
from conveyor.jobs import Job
from conveyor.results import ResultCodec
from conveyor.store.waiting import JobEnd, await_job_end, wait_for_job_end
from conveyor.vocabulary import COMPLETED

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.encryption import PayloadCipher
    from conveyor.orm import AsyncTransactionHandle, TransactionHandle
    from conveyor.store.producer import CancelOutcome, ProducerStatements, SyncProducer

T = TypeVar("T")


class JobHandles:
    """Mixed into `Conveyor`, which provides the settings, cipher and producers declared
    below."""

    if TYPE_CHECKING:
        settings: Settings
        cipher: PayloadCipher

        def _producer(self, connection: TransactionHandle | None) -> SyncProducer: ...

        async def _aproducer(
            self, connection: AsyncTransactionHandle | None
        ) -> ProducerStatements: ...

    def get_job(self, job_id: UUID | str) -> Job:
        """The job's current state, its result decrypted; JobNotFound if there is none (or
        it was pruned)."""
        identifier = parse_job_id(job_id)
        return self._opened(_found(identifier, self._producer(None).get_job(identifier)))

    async def aget_job(self, job_id: UUID | str) -> Job:
        identifier = parse_job_id(job_id)
        found = await (await self._aproducer(None)).get_job(identifier)
        return self._opened(_found(identifier, found))

    def wait(self, job_id: UUID | str, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result (None if the handler returned None).
        Raises JobFailed (dead, cancelled or expired, with the final error),
        ResultNotStored (completed, but its return value could not be kept), JobNotFound,
        or JobWaitTimeout (a TimeoutError) after `timeout` seconds: the job goes on.
        Woken by PostgreSQL's LISTEN/NOTIFY, on a connection of its own while it waits."""
        identifier = parse_job_id(job_id)
        return self._outcome(wait_for_job_end(self.settings, identifier, timeout))

    # The sync form's signature, and a timeout that raises JobWaitTimeout with the job's id
    # rather than cancelling the caller: asyncio.timeout() around it works as well.
    async def await_job(
        self,
        job_id: UUID | str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """`wait` for async code: the event loop runs on while the job does."""
        identifier = parse_job_id(job_id)
        return self._outcome(await await_job_end(self.settings, identifier, timeout))

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

    def _results(self) -> ResultCodec:
        return ResultCodec(self.cipher, self.settings.jobs.max_result_bytes)

    def _opened(self, job: Job) -> Job:
        if job.result is None:
            return job
        return replace(job, result=self._results().decode(job.result, job.id))

    def _outcome(self, end: JobEnd) -> Any:
        if end.status != COMPLETED:
            error = end.final_message or end.last_error
            raise JobFailed(end.id, end.status, error, end.attempt, end.max_attempts)
        if end.result_error is not None:
            raise ResultNotStored(
                end.id, end.status, end.result_error, end.attempt, end.max_attempts
            )
        return self._results().decode(end.result, end.id)


def _found(job_id: UUID, value: T | None) -> T:
    if value is None:
        raise JobNotFound(job_id)
    return value
