"""Batches (docs/batches.md): jobs enqueued together, with progress and callbacks.

`with app.batch(...) as batch:` runs in one transaction (the caller's, with
`connection=`): the batch row, every job `batch.enqueue` adds, and the seal when the block
ends commit together, or not at all. PostgreSQL then counts each job as it ends (triggers
of migration 020, in the statement that ends it) and, once nothing is pending, inserts the
callback jobs in that same statement, exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Unpack
from uuid import UUID

import orjson
import pydantic

from conveyor import client
from conveyor.batch_info import BatchInfo
from conveyor.errors import BatchClosed, BatchNotFound, EnqueueError
from conveyor.ids import parse_job_id, uuid7
from conveyor.middleware import enqueue_guard
from conveyor.store.producer import ProducerStatements, SyncProducer
from conveyor.tasks import Task

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.encryption import PayloadCipher
    from conveyor.middleware import Hooks
    from conveyor.orm import AsyncTransactionHandle, TransactionHandle
    from conveyor.tracing import EnqueueSpan, Tracing

# (task, payload): the payload is a JSON object (or None); the callback job receives it
# with a "batch" key added (see `summary_placeholder`).
Callback = tuple[Task | str, Any]
MAX_DESCRIPTION = 1000
Options = client.EnqueueOptions

__all__ = ["AsyncBatch", "Batch", "BatchHandles", "BatchInfo", "Callback"]


def check_description(description: object) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise EnqueueError(f"description must be text of at most {MAX_DESCRIPTION} characters")
    if "\x00" in description:  # PostgreSQL text cannot hold it: refuse here, not there
        raise EnqueueError("description must not contain a NUL character")
    return description


def summary_placeholder(batch_id: UUID, description: str | None) -> dict[str, Any]:
    """The "batch" key of a callback's payload, as validated at creation; PostgreSQL
    writes the final counts in when the batch finishes."""
    return {
        "id": str(batch_id),
        "description": description,
        "total": 0,
        "succeeded": 0,
        "failed": 0,
    }


class BatchHandles:
    """Mixed into `Conveyor`, which provides what is declared below."""

    if TYPE_CHECKING:
        settings: Settings
        tasks: dict[str, Task]
        cipher: PayloadCipher
        tracing: Tracing
        hooks: Hooks | None

        def _producer(self, connection: TransactionHandle | None) -> SyncProducer: ...

        async def _aproducer(
            self, connection: AsyncTransactionHandle | None
        ) -> ProducerStatements: ...

    @contextmanager
    def batch(
        self,
        *,
        description: str | None = None,
        on_complete: Callback | None = None,
        on_success: Callback | None = None,
        connection: TransactionHandle | None = None,
    ) -> Iterator[Batch]:
        """Group the jobs `batch.enqueue` adds in the block. The batch, its jobs and its
        seal commit when the block ends (with `connection=`, when the caller commits); an
        exception leaves nothing. `on_complete` = (task, payload) is enqueued once every job
        has ended, `on_success` once every job has completed."""
        batch_id, row = self._batch_row(description, on_complete, on_success)
        if connection is not None:
            statements = self._producer(connection)
            yield from _run_sync(self, statements, batch_id, row)
            return
        with self._producer(None).held_transaction() as statements:
            yield from _run_sync(self, statements, batch_id, row)

    @asynccontextmanager
    async def abatch(
        self,
        *,
        description: str | None = None,
        on_complete: Callback | None = None,
        on_success: Callback | None = None,
        connection: AsyncTransactionHandle | None = None,
    ) -> AsyncIterator[AsyncBatch]:
        """`batch` for async code: `async with app.abatch(...) as batch`."""
        batch_id, row = self._batch_row(description, on_complete, on_success)
        if connection is not None:
            statements = await self._aproducer(connection)
            async with _run_async(self, statements, batch_id, row) as handle:
                yield handle
            return
        own = await self._aproducer(None)
        async with (
            own.held_transaction() as bound,
            _run_async(self, bound, batch_id, row) as handle,
        ):
            yield handle

    def get_batch(self, batch_id: UUID | str) -> BatchInfo:
        """The batch's counts and state; BatchNotFound if there is none."""
        identifier = _batch_id(batch_id)
        return _found(identifier, self._producer(None).get_batch(identifier))

    async def aget_batch(self, batch_id: UUID | str) -> BatchInfo:
        identifier = _batch_id(batch_id)
        return _found(identifier, await (await self._aproducer(None)).get_batch(identifier))

    # -- building ------------------------------------------------------------------------

    def _batch_row(
        self,
        description: str | None,
        on_complete: Callback | None,
        on_success: Callback | None,
    ) -> tuple[UUID, dict[str, Any]]:
        """Everything checked before anything is written."""
        batch_id = uuid7()
        text = check_description(description)
        row = {
            "description": text,
            "on_complete": self._callback(on_complete, "on_complete", batch_id, text),
            "on_success": self._callback(on_success, "on_success", batch_id, text),
        }
        return batch_id, row

    def _callback(
        self, callback: Callback | None, name: str, batch_id: UUID, description: str | None
    ) -> str | None:
        """The callback job's record, as finish_batch (migration 020) inserts it."""
        if callback is None:
            return None
        if not isinstance(callback, tuple) or len(callback) != 2:
            raise EnqueueError(f"{name} must be a (task, payload) pair")
        task = client.resolve_task(self.tasks, callback[0])
        payload = callback[1]
        if isinstance(payload, pydantic.BaseModel):
            payload = payload.model_dump(mode="json")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise EnqueueError(f"{name}'s payload must be a JSON object or None")
        if "batch" in payload:
            raise EnqueueError(f"{name}'s payload must not have a 'batch' key: the batch adds it")
        payload = {**payload, "batch": summary_placeholder(batch_id, description)}
        limit = self.settings.jobs.max_payload_bytes
        rows = client.build_batch(task, [payload], client.EnqueueOptions(), limit, self.cipher)
        return orjson.dumps(rows.records[0]).decode()


def _run_sync(
    app: BatchHandles, statements: SyncProducer, batch_id: UUID, row: dict[str, Any]
) -> Iterator[Batch]:
    statements.create_batch(batch_id, row["description"], row["on_complete"], row["on_success"])
    handle = Batch(app, statements, batch_id)
    try:
        yield handle
        statements.seal_batch(batch_id)
    finally:
        handle.open = False


@asynccontextmanager
async def _run_async(
    app: BatchHandles, statements: ProducerStatements, batch_id: UUID, row: dict[str, Any]
) -> AsyncIterator[AsyncBatch]:
    await statements.create_batch(
        batch_id, row["description"], row["on_complete"], row["on_success"]
    )
    handle = AsyncBatch(app, statements, batch_id)
    try:
        yield handle
        await statements.seal_batch(batch_id)
    finally:
        handle.open = False


class _BatchHandle:
    """What the sync and async handles share: the batch, and rows built for it."""

    def __init__(self, app: BatchHandles, batch_id: UUID) -> None:
        self.id = batch_id
        self.open = True
        self._app = app

    def _task(self, task_or_name: Task | str, args: client.EnqueueArgs) -> tuple[Task, Options]:
        if not self.open:  # its connection went back to the pool with the block's end
            raise BatchClosed(self.id)
        task = client.resolve_task(self._app.tasks, task_or_name)
        return task, replace(client.enqueue_options(args), batch_id=self.id)

    def _rows(
        self, task: Task, payloads: Iterable[Any], options: Options, span: EnqueueSpan
    ) -> client.InsertBatch:
        app = self._app
        limit = app.settings.jobs.max_payload_bytes
        return client.build_batch(task, payloads, options, limit, app.cipher, span.context)


class Batch(_BatchHandle):
    """The open batch inside `with app.batch() as batch`: its jobs join with `enqueue`."""

    def __init__(self, app: BatchHandles, statements: SyncProducer, batch_id: UUID) -> None:
        super().__init__(app, batch_id)
        self._statements = statements

    def enqueue(
        self, task: Task | str, payload: Any = None, **args: Unpack[client.EnqueueArgs]
    ) -> UUID:
        """`app.enqueue` into this batch (no idempotency key or dedup: every batch job is
        new)."""
        return self.enqueue_many(task, [payload], **args)[0]

    def enqueue_many(
        self, task: Task | str, payloads: Iterable[Any], **args: Unpack[client.EnqueueArgs]
    ) -> list[UUID]:
        found, options = self._task(task, args)
        payloads = payloads if isinstance(payloads, list) else list(payloads)
        # Inside the batch's own transaction: the jobs commit with the block.
        guard = enqueue_guard(self._app.hooks, found, payloads, options, True)
        with self._app.tracing.enqueue(options.queue or found.queue, found.name) as span, guard:
            rows = self._rows(found, payloads, options, span)
            if not rows.ids:
                return guard.finish([])
            ids = self._statements.enqueue_into_batch(self.id, rows.jobs, rows.ids)
            span.written(ids)
            return guard.finish(client.counted(rows, ids))


class AsyncBatch(_BatchHandle):
    """`Batch` inside `async with app.abatch()`."""

    def __init__(self, app: BatchHandles, statements: ProducerStatements, batch_id: UUID) -> None:
        super().__init__(app, batch_id)
        self._statements = statements

    async def enqueue(
        self, task: Task | str, payload: Any = None, **args: Unpack[client.EnqueueArgs]
    ) -> UUID:
        return (await self.enqueue_many(task, [payload], **args))[0]

    async def enqueue_many(
        self, task: Task | str, payloads: Iterable[Any], **args: Unpack[client.EnqueueArgs]
    ) -> list[UUID]:
        found, options = self._task(task, args)
        payloads = payloads if isinstance(payloads, list) else list(payloads)
        # Inside the batch's own transaction: the jobs commit with the block.
        guard = enqueue_guard(self._app.hooks, found, payloads, options, True)
        with self._app.tracing.enqueue(options.queue or found.queue, found.name) as span, guard:
            rows = self._rows(found, payloads, options, span)
            if not rows.ids:
                return guard.finish([])
            ids = await self._statements.enqueue_into_batch(self.id, rows.jobs, rows.ids)
            span.written(ids)
            return guard.finish(client.counted(rows, ids))


def _batch_id(value: object) -> UUID:
    try:
        return parse_job_id(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a batch id (expected a UUID)") from None


def _found(batch_id: UUID, info: BatchInfo | None) -> BatchInfo:
    if info is None:
        raise BatchNotFound(batch_id)
    return info
