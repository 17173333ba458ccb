"""`Conveyor`: the application object that holds settings, tasks and connection pools."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Unpack, overload
from uuid import UUID

from conveyor import client
from conveyor.batches import BatchHandles
from conveyor.config import Settings, load_settings
from conveyor.dedup import Dedup, many_modes, one_mode
from conveyor.encryption import PayloadCipher
from conveyor.enqueue_results import ResultEnqueue
from conveyor.job_handles import JobHandles
from conveyor.middleware import Hooks, Middleware, check_middleware, enqueue_guard
from conveyor.orm import (
    AsyncTransactionHandle,
    TransactionHandle,
    async_connection,
    sync_connection,
)
from conveyor.periodic import PeriodicMixin
from conveyor.retry import RetryPolicy
from conveyor.schedules import ScheduleSpec
from conveyor.store.migrate import apply_migrations
from conveyor.store.producer import ProducerStatements, SyncProducer
from conveyor.task_limits import TaskLimits
from conveyor.tasks import Task
from conveyor.tracing import Tracing
from conveyor.workflows import WorkflowEnqueue

TaskFunction = Callable[..., Any]


class Conveyor(PeriodicMixin, ResultEnqueue, JobHandles, BatchHandles, TaskLimits, WorkflowEnqueue):
    """Declare tasks and enqueue jobs.

    Settings come from `settings=`, or are loaded from `config=` (YAML) and the
    environment (DATABASE_URL, REDIS_URL, ...); keyword arguments override both.
    `middleware` (or `add_middleware`) wraps enqueue here and every attempt in the
    workers that import this app (docs/middleware.md).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config: str | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        schema: str | None = None,
        key_prefix: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        overrides = {
            key: value
            for key, value in {
                "database.url": database_url,
                "redis.url": redis_url,
                "database.schema": schema,
                "redis.key_prefix": key_prefix,
            }.items()
            if value is not None
        }
        if settings is None:
            settings = load_settings(config, overrides=overrides)
        elif overrides:
            settings = load_settings(config, env={}, overrides={**_flatten(settings), **overrides})
        self.settings = settings
        # Transitional, for callers that still run a statement by name themselves.
        self.tasks: dict[str, Task] = {}
        # Periodic jobs declared with `periodic` / `schedule` (see conveyor.periodic).
        self.schedules: dict[str, ScheduleSpec] = {}
        self.cipher = PayloadCipher(settings.encryption.keys, settings.encryption.fields)
        # Spans for enqueue, when OpenTelemetry is installed and configured (see tracing).
        self.tracing = Tracing.from_settings(settings)
        self._statements: SyncProducer | None = None
        self._async_statements: ProducerStatements | None = None
        self._middleware: list[Middleware] = []
        # None without middleware: enqueue then calls no hook at all.
        self.hooks: Hooks | None = None
        for each in middleware:
            self.add_middleware(each)

    # -- middleware ----------------------------------------------------------------------

    def add_middleware(self, middleware: Middleware) -> None:
        """Register a middleware after those already registered (it runs inside them)."""
        self._middleware.append(check_middleware(middleware))
        self.hooks = Hooks(self._middleware)

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        return tuple(self._middleware)

    # -- tasks ---------------------------------------------------------------------------

    @overload
    def task(self, func: TaskFunction, /) -> Task: ...
    @overload
    def task(
        self,
        /,
        *,
        name: str | None = ...,
        queue: str = ...,
        priority: int | None = ...,
        max_attempts: int | None = ...,
        timeout: float | None = ...,
        lease: float | None = ...,
        retry: RetryPolicy | None = ...,
        max_snoozes: int = ...,
        expires_in: float | timedelta | None = ...,
        rate_limit: str | None = ...,
        concurrency_limit: int | None = ...,
    ) -> Callable[[TaskFunction], Task]: ...

    def task(
        self,
        func: TaskFunction | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        lease: float | None = None,
        retry: RetryPolicy | None = None,
        max_snoozes: int = 100,
        expires_in: float | timedelta | None = None,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
    ) -> Task | Callable[[TaskFunction], Task]:
        """Register a sync or async function as a task: `@app.task(queue="email-sending")`.
        `rate_limit` ("100/s", "5/10s") and `concurrency_limit` hold across every worker;
        `conveyor worker` writes them to PostgreSQL when it starts."""

        def register(function: TaskFunction) -> Task:
            jobs = self.settings.jobs
            policy = retry or RetryPolicy(
                base=self.settings.retry.base,
                cap=self.settings.retry.cap,
                jitter=self.settings.retry.jitter,
            )
            task = Task(
                name=name or f"{function.__module__}.{function.__qualname__}",
                func=function,
                queue=queue,
                priority=priority if priority is not None else jobs.default_priority,
                max_attempts=max_attempts if max_attempts is not None else jobs.max_attempts,
                timeout=timeout if timeout is not None else jobs.timeout,
                lease=lease,
                retry=policy,
                max_snoozes=max_snoozes,
                expires_in=(
                    expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
                ),
                enqueue_hook=self._enqueue_from_task,
                rate_limit=rate_limit,
                concurrency_limit=concurrency_limit,
            )
            if task.name in self.tasks:
                raise ValueError(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register(func) if func is not None else register

    def _enqueue_from_task(self, task: Task, payload: Any, **options: Any) -> UUID:
        return self.enqueue(task, payload, **options)

    # -- enqueue -------------------------------------------------------------------------

    def _batch(
        self,
        task: Task,
        payloads: Iterable[Any],
        options: client.EnqueueOptions,
        trace_context: dict[str, str] | None,
    ) -> client.InsertBatch:
        limit = self.settings.jobs.max_payload_bytes
        return client.build_batch(task, payloads, options, limit, self.cipher, trace_context)

    def _enqueue(
        self,
        task_or_name: Task | str,
        payloads: Iterable[Any],
        options: client.EnqueueOptions,
        connection: TransactionHandle | None,
    ) -> list[UUID]:
        if options.dedup is not None:
            results = self._enqueue_results(task_or_name, payloads, options, connection)
            return [result.job_id for result in results]
        task = client.resolve_task(self.tasks, task_or_name)
        payloads = payloads if isinstance(payloads, list) else list(payloads)
        guard = enqueue_guard(self.hooks, task, payloads, options, connection is not None)
        with self.tracing.enqueue(options.queue or task.queue, task.name) as span, guard:
            batch = self._batch(task, payloads, options, span.context)
            ids = self._write(batch, connection) if batch.ids else []
            span.written(ids)
            return guard.finish(ids)

    async def _aenqueue(
        self,
        task_or_name: Task | str,
        payloads: Iterable[Any],
        options: client.EnqueueOptions,
        connection: AsyncTransactionHandle | None,
    ) -> list[UUID]:
        if options.dedup is not None:
            results = await self._aenqueue_results(task_or_name, payloads, options, connection)
            return [result.job_id for result in results]
        task = client.resolve_task(self.tasks, task_or_name)
        payloads = payloads if isinstance(payloads, list) else list(payloads)
        guard = enqueue_guard(self.hooks, task, payloads, options, connection is not None)
        with self.tracing.enqueue(options.queue or task.queue, task.name) as span, guard:
            batch = self._batch(task, payloads, options, span.context)
            ids = await self._awrite(batch, connection) if batch.ids else []
            span.written(ids)
            return guard.finish(ids)

    def enqueue(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        connection: TransactionHandle | None = None,
        dedup: Dedup | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> UUID:
        """Enqueue one job; return its id once it is committed (or once written into
        `connection`'s open transaction: a psycopg connection, a SQLAlchemy Session or
        Connection, or Django's connection inside `transaction.atomic()`; see docs/orm.md).
        An `idempotency_key` held by a job whose row still exists (retention has not
        pruned it) returns that job's id and adds nothing.
        `tenant` names who the job belongs to: scoped API tokens and dashboard users see
        only their tenants' jobs. `dedup` (`Unique`, `Debounce`, `Throttle`) returns the
        id of the job that absorbed a duplicate; `enqueue_result` also says what happened.
        A job not started within `expires_in` (or by the aware datetime `deadline`) ends
        expired and never runs. `limit_key` puts the job under the global limits of that
        key (`limits.keys` in the configuration; docs/scheduling.md)."""
        options = client.enqueue_options(
            args, dedup=one_mode(dedup), idempotency_key=idempotency_key
        )
        return self._enqueue(task, [payload], options, connection)[0]

    def enqueue_many(
        self,
        task: Task | str,
        payloads: Iterable[Any],
        *,
        connection: TransactionHandle | None = None,
        dedup: Sequence[Dedup | None] | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> list[UUID]:
        """Enqueue many jobs of one task in a single statement; all or none are written.
        `dedup` gives one mode (or None) per payload, as `enqueue`'s `dedup`."""
        options = client.enqueue_options(args, dedup=many_modes(dedup))
        return self._enqueue(task, payloads, options, connection)

    async def aenqueue(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        connection: AsyncTransactionHandle | None = None,
        dedup: Dedup | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> UUID:
        options = client.enqueue_options(
            args, dedup=one_mode(dedup), idempotency_key=idempotency_key
        )
        return (await self._aenqueue(task, [payload], options, connection))[0]

    async def aenqueue_many(
        self,
        task: Task | str,
        payloads: Iterable[Any],
        *,
        connection: AsyncTransactionHandle | None = None,
        dedup: Sequence[Dedup | None] | None = None,
        **args: Unpack[client.EnqueueArgs],
    ) -> list[UUID]:
        options = client.enqueue_options(args, dedup=many_modes(dedup))
        return await self._aenqueue(task, payloads, options, connection)

    def _write(self, batch: client.InsertBatch, connection: TransactionHandle | None) -> list[UUID]:
        statements = self._producer(connection)
        ids = statements.insert_jobs(batch.jobs, batch.ids, batch.keys, batch.parents)
        return client.counted(batch, ids)

    async def _awrite(
        self, batch: client.InsertBatch, connection: AsyncTransactionHandle | None
    ) -> list[UUID]:
        statements = await self._aproducer(connection)
        ids = await statements.insert_jobs(batch.jobs, batch.ids, batch.keys, batch.parents)
        return client.counted(batch, ids)

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> list[str]:
        return apply_migrations(self.settings)

    def _producer(self, connection: TransactionHandle | None) -> SyncProducer:
        """The caller's connection (or the one inside its ORM transaction, see
        `conveyor.orm`), else our own pool (opened on first use)."""
        schema = self.settings.database.schema_name
        if connection is not None:
            return SyncProducer(None, schema, connection=sync_connection(connection))
        if self._statements is None:
            self._statements = SyncProducer.open(self.settings, "client")
        return self._statements

    async def _aproducer(self, connection: AsyncTransactionHandle | None) -> ProducerStatements:
        schema = self.settings.database.schema_name
        if connection is not None:
            return ProducerStatements(None, schema, connection=await async_connection(connection))
        if self._async_statements is None:
            # Opened here, inside the caller's event loop, which the pool's tasks run on.
            self._async_statements = await ProducerStatements.open(self.settings, "client")
        return self._async_statements

    def close(self) -> None:
        if self._statements is not None:
            self._statements.close()
            self._statements = None

    async def aclose(self) -> None:
        if self._async_statements is not None:
            await self._async_statements.close()
            self._async_statements = None
        self.close()


def _flatten(settings: Settings) -> dict[str, Any]:
    """Dotted keys of every setting, so explicit arguments can be layered on top."""
    flat: dict[str, Any] = {}
    for section, values in settings.model_dump(by_alias=True).items():
        if isinstance(values, dict) and section not in ("queues", "schedules"):
            for key, value in values.items():
                flat[f"{section}.{key}"] = value
        else:
            flat[section] = values
    return flat
