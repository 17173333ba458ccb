"""Chains, groups and chords: several jobs and their dependencies enqueued in one
transaction (docs/workflows.md).

Every job id is made before anything is written (UUID version 7, client side), so each
step's `depends_on` names the jobs of the steps before it, and the whole workflow is a
few `insert_jobs` statements (one per chain step, one for a group, two for a chord) that
commit together: all of it exists, or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from conveyor import client, metrics
from conveyor.errors import EnqueueError
from conveyor.tasks import Signature

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.encryption import PayloadCipher
    from conveyor.orm import AsyncTransactionHandle, TransactionHandle
    from conveyor.store.producer import InsertStep, ProducerStatements, SyncProducer
    from conveyor.tasks import Task
    from conveyor.tracing import EnqueueSpan, Tracing


@dataclass(frozen=True)
class ChainHandle:
    """The jobs of a chain, in order: each runs after the one before it completed."""

    ids: list[UUID]

    @property
    def last(self) -> UUID:
        """The last step: wait on it for the chain's result."""
        return self.ids[-1]


@dataclass(frozen=True)
class GroupHandle:
    """The jobs of a group: they run in parallel, nothing waits on them."""

    ids: list[UUID]


@dataclass(frozen=True)
class ChordHandle:
    """A group (the header) and the callback that runs once all of them have ended."""

    header: list[UUID]
    callback: UUID


@dataclass
class _Plan:
    """The insert_jobs steps of one workflow, built before anything is written."""

    steps: list[client.InsertBatch] = field(default_factory=list)

    def add(self, batches: list[client.InsertBatch]) -> list[UUID]:
        merged = client.InsertBatch(
            ids=[job_id for batch in batches for job_id in batch.ids],
            keys=[key for batch in batches for key in batch.keys],
            records=[record for batch in batches for record in batch.records],
            parents=list(dict.fromkeys(p for batch in batches for p in batch.parents)),
        )
        self.steps.append(merged)
        return merged.ids

    def statements(self) -> list[InsertStep]:
        return [(step.jobs, step.ids, step.keys, step.parents) for step in self.steps]

    def count(self) -> None:
        for step in self.steps:
            for record in step.records:
                metrics.ENQUEUED.labels(record["queue_name"], record["task"]).inc()


def _checked(signature: object) -> Signature:
    if not isinstance(signature, Signature):
        raise EnqueueError(
            f"a workflow step must be a signature (task.s(payload, ...)), not "
            f"{type(signature).__name__}"
        )
    return signature


class WorkflowEnqueue:
    """Mixed into `Conveyor`, which provides the attributes declared below."""

    if TYPE_CHECKING:
        tasks: dict[str, Task]
        cipher: PayloadCipher
        settings: Settings
        tracing: Tracing

        def _producer(self, connection: TransactionHandle | None) -> SyncProducer: ...

        async def _aproducer(
            self, connection: AsyncTransactionHandle | None
        ) -> ProducerStatements: ...

    # -- building (every check before anything is written) -------------------------------

    def _span(
        self, signatures: Sequence[Signature], noun: str
    ) -> AbstractContextManager[EnqueueSpan]:
        """One enqueue span for the whole workflow, named for its first job; every job
        carries its context, so the workers' spans of all of them join the caller's trace."""
        if not signatures:
            raise EnqueueError(f"a {noun} needs at least one signature")
        first = _checked(signatures[0])
        task = client.resolve_task(self.tasks, first.task)
        return self.tracing.enqueue(first.options.get("queue") or task.queue, task.name)

    def _signature_batch(
        self, signature: Signature, trace: dict[str, str] | None, after: Sequence[UUID] = ()
    ) -> client.InsertBatch:
        task = client.resolve_task(self.tasks, _checked(signature).task)
        options = dict(signature.options)
        own = client.check_parents(options.pop("depends_on", None))
        if after:
            options["depends_on"] = [*after, *own]
        elif own:
            options["depends_on"] = own
        args = client.enqueue_options(options)  # type: ignore[arg-type]
        limit = self.settings.jobs.max_payload_bytes
        return client.build_batch(task, [signature.payload], args, limit, self.cipher, trace)

    def _chain_plan(
        self, signatures: Sequence[Signature], trace: dict[str, str] | None
    ) -> tuple[_Plan, list[UUID]]:
        plan, ids = _Plan(), list[UUID]()
        for signature in signatures:
            ids += plan.add([self._signature_batch(signature, trace, ids[-1:])])
        return plan, ids

    def _group_plan(
        self, signatures: Sequence[Signature], trace: dict[str, str] | None
    ) -> tuple[_Plan, list[UUID]]:
        plan = _Plan()
        ids = plan.add([self._signature_batch(signature, trace) for signature in signatures])
        return plan, ids

    def _chord_plan(
        self, signatures: Sequence[Signature], callback: Signature, trace: dict[str, str] | None
    ) -> tuple[_Plan, list[UUID], UUID]:
        plan, header = self._group_plan(signatures, trace)
        if len(header) > client.MAX_PARENTS:
            raise EnqueueError(f"a chord of {len(header)} jobs is over {client.MAX_PARENTS}")
        (last,) = plan.add([self._signature_batch(callback, trace, header)])
        return plan, header, last

    def _write_plan(self, plan: _Plan, connection: TransactionHandle | None) -> None:
        self._producer(connection).insert_workflow(plan.statements())
        plan.count()

    async def _awrite_plan(self, plan: _Plan, connection: AsyncTransactionHandle | None) -> None:
        await (await self._aproducer(connection)).insert_workflow(plan.statements())
        plan.count()

    # -- sync ----------------------------------------------------------------------------

    def chain(
        self, *signatures: Signature, connection: TransactionHandle | None = None
    ) -> ChainHandle:
        """Enqueue the signatures as a chain: each waits for the one before it and reads
        its result as `ctx.parent_result`. All are written in one transaction (the
        caller's, with `connection=`)."""
        with self._span(signatures, "chain") as span:
            plan, ids = self._chain_plan(signatures, span.context)
            self._write_plan(plan, connection)
            span.written(ids)
        return ChainHandle(ids)

    def group(
        self, signatures: Sequence[Signature], *, connection: TransactionHandle | None = None
    ) -> GroupHandle:
        """Enqueue the signatures together in one statement; they run in parallel."""
        with self._span(signatures, "group") as span:
            plan, ids = self._group_plan(signatures, span.context)
            self._write_plan(plan, connection)
            span.written(ids)
        return GroupHandle(ids)

    def chord(
        self,
        signatures: Sequence[Signature],
        callback: Signature,
        *,
        connection: TransactionHandle | None = None,
    ) -> ChordHandle:
        """Enqueue a group and a callback that runs once every job of the group has ended,
        with their results in `ctx.parent_results` (in the group's order). The callback's
        `on_parent_failure` says what a job of the group that did not complete does:
        "cancel" (the default) or "run"."""
        with self._span(signatures, "chord") as span:
            plan, header, last = self._chord_plan(signatures, callback, span.context)
            self._write_plan(plan, connection)
            span.written([*header, last])
        return ChordHandle(header, last)

    # -- async ---------------------------------------------------------------------------

    async def achain(
        self, *signatures: Signature, connection: AsyncTransactionHandle | None = None
    ) -> ChainHandle:
        with self._span(signatures, "chain") as span:
            plan, ids = self._chain_plan(signatures, span.context)
            await self._awrite_plan(plan, connection)
            span.written(ids)
        return ChainHandle(ids)

    async def agroup(
        self, signatures: Sequence[Signature], *, connection: AsyncTransactionHandle | None = None
    ) -> GroupHandle:
        with self._span(signatures, "group") as span:
            plan, ids = self._group_plan(signatures, span.context)
            await self._awrite_plan(plan, connection)
            span.written(ids)
        return GroupHandle(ids)

    async def achord(
        self,
        signatures: Sequence[Signature],
        callback: Signature,
        *,
        connection: AsyncTransactionHandle | None = None,
    ) -> ChordHandle:
        with self._span(signatures, "chord") as span:
            plan, header, last = self._chord_plan(signatures, callback, span.context)
            await self._awrite_plan(plan, connection)
            span.written([*header, last])
        return ChordHandle(header, last)


__all__ = ["ChainHandle", "ChordHandle", "GroupHandle", "WorkflowEnqueue"]
