"""Enqueue that says what happened: `enqueue_result` and `enqueue_many_results`.

`Conveyor.enqueue` returns a job id whatever happened (the id of the existing job when a
dedup mode absorbed the payload), as an `idempotency_key` always has. These methods return
an `EnqueueResult` per payload instead: the job id and the outcome ("enqueued",
"duplicate", "debounced", "throttled").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Unpack
from uuid import UUID

import orjson

from conveyor import client, dedup, metrics
from conveyor.dedup import Dedup, EnqueueResult
from conveyor.errors import EnqueueError
from conveyor.middleware import enqueue_guard

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.encryption import PayloadCipher
    from conveyor.middleware import Hooks
    from conveyor.orm import AsyncTransactionHandle, TransactionHandle
    from conveyor.store.dedup import Reseal
    from conveyor.store.producer import ProducerStatements, SyncProducer
    from conveyor.tasks import Task
    from conveyor.tracing import Tracing


class ResultEnqueue:
    """Mixed into `Conveyor`, which provides the attributes declared below."""

    if TYPE_CHECKING:
        tasks: dict[str, Task]
        tracing: Tracing
        cipher: PayloadCipher
        settings: Settings
        hooks: Hooks | None

        def _batch(
            self,
            task: Task,
            payloads: Iterable[Any],
            options: client.EnqueueOptions,
            trace_context: dict[str, str] | None,
        ) -> client.InsertBatch: ...

        def _producer(self, connection: TransactionHandle | None) -> SyncProducer: ...

        async def _aproducer(
            self, connection: AsyncTransactionHandle | None
        ) -> ProducerStatements: ...

    def enqueue_result(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        dedup: Dedup | None = None,
        connection: TransactionHandle | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> EnqueueResult:
        """As `enqueue`, and say whether the job was written or which job absorbed it."""
        options = client.enqueue_options(args, dedup=(dedup,))
        return self._enqueue_results(task, [payload], options, connection)[0]

    def enqueue_many_results(
        self,
        task: Task | str,
        payloads: Iterable[Any],
        *,
        dedup: Sequence[Dedup | None] | None = None,
        connection: TransactionHandle | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> list[EnqueueResult]:
        """As `enqueue_many`, one `EnqueueResult` per payload, in order."""
        payloads = list(payloads)
        modes = _modes(dedup, len(payloads))
        options = client.enqueue_options(args, dedup=modes)
        return self._enqueue_results(task, payloads, options, connection)

    async def aenqueue_result(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        dedup: Dedup | None = None,
        connection: AsyncTransactionHandle | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> EnqueueResult:
        options = client.enqueue_options(args, dedup=(dedup,))
        return (await self._aenqueue_results(task, [payload], options, connection))[0]

    async def aenqueue_many_results(
        self,
        task: Task | str,
        payloads: Iterable[Any],
        *,
        dedup: Sequence[Dedup | None] | None = None,
        connection: AsyncTransactionHandle | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> list[EnqueueResult]:
        payloads = list(payloads)
        modes = _modes(dedup, len(payloads))
        options = client.enqueue_options(args, dedup=modes)
        return await self._aenqueue_results(task, payloads, options, connection)

    def _dedup_batch(
        self, task: Task, payloads: Iterable[Any], options: client.EnqueueOptions, trace: Any
    ) -> tuple[dedup.DedupBatch, Reseal | None]:
        payloads = list(payloads)
        batch = self._batch(task, payloads, options, trace)
        merged = dedup.dedup_batch(batch.ids, batch.records, options.dedup or ())
        return merged, self._resealer(task, payloads, batch.ids)

    def _resealer(self, task: Task, payloads: list[Any], ids: list[UUID]) -> Reseal | None:
        """Encrypted fields are sealed to their job's id: a debounce that moves a payload
        into an existing job seals it again, to that job (see store.dedup)."""
        if not self.cipher.enabled:
            return None
        cipher, limit = self.cipher, self.settings.jobs.max_payload_bytes
        position = {job_id: index for index, job_id in enumerate(ids)}

        def reseal(request_id: UUID, job_id: UUID) -> Any:
            payload = payloads[position[request_id]]
            sealer = partial(cipher.encrypt, job_id=job_id)
            return orjson.Fragment(task.encode_payload(payload, limit, sealer))

        return reseal

    def _enqueue_results(
        self,
        task_or_name: Task | str,
        payloads: Iterable[Any],
        options: client.EnqueueOptions,
        connection: TransactionHandle | None,
    ) -> list[EnqueueResult]:
        task = client.resolve_task(self.tasks, task_or_name)
        payloads = payloads if isinstance(payloads, list) else list(payloads)
        guard = enqueue_guard(self.hooks, task, payloads, options, connection is not None)
        with self.tracing.enqueue(options.queue or task.queue, task.name) as span, guard:
            batch, reseal = self._dedup_batch(task, payloads, options, span.context)
            results = []
            if batch.ids:
                statements = self._producer(connection)
                rows = statements.enqueue_deduplicated(batch.records, batch.keys, reseal)
                results = _counted(batch, batch.results(rows))
            span.written(guard.finish([result.job_id for result in results]))
            return results

    async def _aenqueue_results(
        self,
        task_or_name: Task | str,
        payloads: Iterable[Any],
        options: client.EnqueueOptions,
        connection: AsyncTransactionHandle | None,
    ) -> list[EnqueueResult]:
        task = client.resolve_task(self.tasks, task_or_name)
        payloads = payloads if isinstance(payloads, list) else list(payloads)
        guard = enqueue_guard(self.hooks, task, payloads, options, connection is not None)
        with self.tracing.enqueue(options.queue or task.queue, task.name) as span, guard:
            batch, reseal = self._dedup_batch(task, payloads, options, span.context)
            results = []
            if batch.ids:
                statements = await self._aproducer(connection)
                rows = await statements.enqueue_deduplicated(batch.records, batch.keys, reseal)
                results = _counted(batch, batch.results(rows))
            span.written(guard.finish([result.job_id for result in results]))
            return results


def _modes(dedup: Sequence[Dedup | None] | None, count: int) -> tuple[Dedup | None, ...]:
    if dedup is None:
        return (None,) * count
    if not isinstance(dedup, list | tuple):
        raise EnqueueError("dedup for enqueue_many must be a list, one mode (or None) per job")
    return tuple(dedup)


def _counted(batch: dedup.DedupBatch, results: list[EnqueueResult]) -> list[EnqueueResult]:
    """Count written jobs only (as `client.counted` does for idempotent repeats)."""
    written = sum(result.written for result in results)
    if written:
        first = batch.records[0]
        metrics.ENQUEUED.labels(first["queue_name"], first["task"]).inc(written)
    return results
