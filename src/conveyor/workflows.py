"""Chains, groups and chords: several jobs and their dependencies enqueued in one
transaction (docs/workflows.md).

Every job id is made before anything is written (UUID version 7, client side), so each
step's `depends_on` names the jobs of the steps before it, and the whole workflow is a
few `insert_jobs` statements (one per chain step, one for a group, two for a chord) that
commit together: all of it exists, or none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from conveyor import client, metrics
from conveyor.errors import EnqueueError
from conveyor.middleware import enqueue_guard
from conveyor.tasks import Signature

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.encryption import PayloadCipher
    from conveyor.middleware import Hooks
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
    # One enqueue call per signature, as the middleware sees it: task, payload, options, ids.
    calls: list[tuple[Task, Any, client.EnqueueOptions, list[UUID]]] = field(default_factory=list)

    @property
    def ids(self) -> list[UUID]:
        """Every job of the workflow, in the order written."""
        return [job_id for step in self.steps for job_id in step.ids]

    def chord(self) -> ChordHandle:
        header, callback = self.steps
        return ChordHandle(header.ids, callback.ids[0])

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
        hooks: Hooks | None

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
        self,
        plan: _Plan,
        signature: Signature,
        trace: dict[str, str] | None,
        after: Sequence[UUID] = (),
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
        batch = client.build_batch(task, [signature.payload], args, limit, self.cipher, trace)
        plan.calls.append((task, signature.payload, args, batch.ids))
        return batch

    def _build(
        self,
        noun: str,
        signatures: Sequence[Signature],
        callback: Signature | None,
        trace: dict[str, str] | None,
    ) -> _Plan:
        plan = _Plan()
        if noun == "chain":
            for signature in signatures:
                previous = plan.steps[-1].ids if plan.steps else []
                plan.add([self._signature_batch(plan, signature, trace, previous)])
            return plan
        header = plan.add(
            [self._signature_batch(plan, signature, trace) for signature in signatures]
        )
        if callback is not None:
            if len(header) > client.MAX_PARENTS:
                raise EnqueueError(f"a chord of {len(header)} jobs is over {client.MAX_PARENTS}")
            plan.add([self._signature_batch(plan, callback, trace, header)])
        return plan

    @contextmanager
    def _planned(
        self, noun: str, signatures: Sequence[Signature], callback: Signature | None = None
    ) -> Iterator[_Plan]:
        """The workflow's plan, built inside its enqueue span, for the caller to write; the
        span then records every id."""
        with self._span(signatures, noun) as span:
            plan = self._build(noun, signatures, callback, span.context)
            yield plan
            span.written(plan.ids)

    @contextmanager
    def _hooked(self, plan: _Plan, in_transaction: bool) -> Iterator[None]:
        """Each signature is one enqueue call to the enqueue middleware: every
        `before_enqueue` runs before anything is written, every `after_enqueue` once the
        whole workflow is (docs/middleware.md)."""
        with ExitStack() as stack:
            guards = []
            for task, payload, options, ids in plan.calls:
                guard = enqueue_guard(self.hooks, task, [payload], options, in_transaction)
                stack.enter_context(guard)
                guards.append((guard, ids))
            yield
            for guard, ids in guards:
                guard.finish(list(ids))

    def _write_plan(self, plan: _Plan, connection: TransactionHandle | None) -> None:
        with self._hooked(plan, connection is not None):
            self._producer(connection).insert_workflow(plan.statements())
        plan.count()

    async def _awrite_plan(self, plan: _Plan, connection: AsyncTransactionHandle | None) -> None:
        with self._hooked(plan, connection is not None):
            await (await self._aproducer(connection)).insert_workflow(plan.statements())
        plan.count()

    # -- sync ----------------------------------------------------------------------------

    def chain(
        self, *signatures: Signature, connection: TransactionHandle | None = None
    ) -> ChainHandle:
        """Enqueue the signatures as a chain: each waits for the one before it and reads
        its result as `ctx.parent_result`. All are written in one transaction (the
        caller's, with `connection=`)."""
        with self._planned("chain", signatures) as plan:
            self._write_plan(plan, connection)
        return ChainHandle(plan.ids)

    def group(
        self, signatures: Sequence[Signature], *, connection: TransactionHandle | None = None
    ) -> GroupHandle:
        """Enqueue the signatures together in one statement; they run in parallel."""
        with self._planned("group", signatures) as plan:
            self._write_plan(plan, connection)
        return GroupHandle(plan.ids)

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
        with self._planned("chord", signatures, callback) as plan:
            self._write_plan(plan, connection)
        return plan.chord()

    # -- async ---------------------------------------------------------------------------

    async def achain(
        self, *signatures: Signature, connection: AsyncTransactionHandle | None = None
    ) -> ChainHandle:
        with self._planned("chain", signatures) as plan:
            await self._awrite_plan(plan, connection)
        return ChainHandle(plan.ids)

    async def agroup(
        self, signatures: Sequence[Signature], *, connection: AsyncTransactionHandle | None = None
    ) -> GroupHandle:
        with self._planned("group", signatures) as plan:
            await self._awrite_plan(plan, connection)
        return GroupHandle(plan.ids)

    async def achord(
        self,
        signatures: Sequence[Signature],
        callback: Signature,
        *,
        connection: AsyncTransactionHandle | None = None,
    ) -> ChordHandle:
        with self._planned("chord", signatures, callback) as plan:
            await self._awrite_plan(plan, connection)
        return plan.chord()


__all__ = ["ChainHandle", "ChordHandle", "GroupHandle", "WorkflowEnqueue"]
