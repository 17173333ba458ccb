"""`Conveyor`: the application object that holds settings, tasks and connection pools."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, overload
from uuid import UUID

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from conveyor import client
from conveyor.config import Settings, load_settings
from conveyor.encryption import PayloadCipher
from conveyor.errors import JobNotFound
from conveyor.ids import parse_job_id
from conveyor.jobs import Job
from conveyor.retry import RetryPolicy
from conveyor.store import load_queries
from conveyor.store.connect import OPERATIONAL_ERRORS, async_pool, sync_pool, unavailable
from conveyor.store.migrate import migrate
from conveyor.tasks import Task

TaskFunction = Callable[..., Any]
_DB_ERRORS = (*OPERATIONAL_ERRORS, psycopg_pool.PoolTimeout)


class Conveyor:
    """Declare tasks and enqueue jobs.

    Settings come from `settings=`, or are loaded from `config=` (YAML) and the
    environment (DATABASE_URL, REDIS_URL, ...); keyword arguments override both.
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
        self.queries = load_queries(settings.database.schema_name)
        self.tasks: dict[str, Task] = {}
        self.cipher = PayloadCipher(settings.encryption.keys, settings.encryption.fields)
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._async_pool: psycopg_pool.AsyncConnectionPool | None = None

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
    ) -> Task | Callable[[TaskFunction], Task]:
        """Register a sync or async function as a task: `@app.task(queue="email-sending")`."""

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
                enqueue_hook=self._enqueue_from_task,
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
        self, task_or_name: Task | str, payloads: Iterable[Any], options: client.EnqueueOptions
    ) -> client.InsertBatch:
        task = client.resolve_task(self.tasks, task_or_name)
        return client.build_batch(
            task, payloads, options, self.settings.jobs.max_payload_bytes, self.cipher
        )

    def enqueue(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> UUID:
        """Enqueue one job; return its id once it is committed (or once written into
        `connection`'s open transaction)."""
        options = client.EnqueueOptions(
            priority, run_at, delay, max_attempts, idempotency_key, queue
        )
        return self._write(self._batch(task, [payload], options), connection)[0]

    def enqueue_many(
        self,
        task: Task | str,
        payloads: Iterable[Any],
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> list[UUID]:
        """Enqueue many jobs of one task in a single statement; all or none are written."""
        options = client.EnqueueOptions(priority, run_at, delay, max_attempts, None, queue)
        batch = self._batch(task, payloads, options)
        return self._write(batch, connection) if batch.ids else []

    async def aenqueue(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> UUID:
        options = client.EnqueueOptions(
            priority, run_at, delay, max_attempts, idempotency_key, queue
        )
        return (await self._awrite(self._batch(task, [payload], options), connection))[0]

    async def aenqueue_many(
        self,
        task: Task | str,
        payloads: Iterable[Any],
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[UUID]:
        options = client.EnqueueOptions(priority, run_at, delay, max_attempts, None, queue)
        batch = self._batch(task, payloads, options)
        return await self._awrite(batch, connection) if batch.ids else []

    def _write(self, batch: client.InsertBatch, conn: psycopg.Connection[Any] | None) -> list[UUID]:
        if conn is not None:
            return client.counted(batch, self._insert(conn, batch))
        try:
            with self.pool().connection() as pooled, pooled.transaction():
                ids = self._insert(pooled, batch)
        except _DB_ERRORS as error:
            raise unavailable(error) from error
        return client.counted(batch, ids)

    def _insert(self, conn: psycopg.Connection[Any], batch: client.InsertBatch) -> list[UUID]:
        with conn.cursor() as cur:
            cur.execute(self.queries["insert_jobs"], batch.params)
            inserted = [row[0] for row in cur.fetchall()]
            existing: dict[str, UUID] = {}
            if len(inserted) < len(batch.ids):
                keys = [key for key in batch.keys if key is not None]
                cur.execute(self.queries["job_ids_by_idempotency_key"], {"keys": keys})
                existing = {row[0]: row[1] for row in cur.fetchall()}
        return client.resolve_ids(batch, inserted, existing)

    async def _awrite(
        self, batch: client.InsertBatch, conn: psycopg.AsyncConnection[Any] | None
    ) -> list[UUID]:
        if conn is not None:
            return client.counted(batch, await self._ainsert(conn, batch))
        try:
            async with (await self.async_pool()).connection() as pooled, pooled.transaction():
                ids = await self._ainsert(pooled, batch)
        except _DB_ERRORS as error:
            raise unavailable(error) from error
        return client.counted(batch, ids)

    async def _ainsert(
        self, conn: psycopg.AsyncConnection[Any], batch: client.InsertBatch
    ) -> list[UUID]:
        async with conn.cursor() as cur:
            await cur.execute(self.queries["insert_jobs"], batch.params)
            inserted = [row[0] for row in await cur.fetchall()]
            existing: dict[str, UUID] = {}
            if len(inserted) < len(batch.ids):
                keys = [key for key in batch.keys if key is not None]
                await cur.execute(self.queries["job_ids_by_idempotency_key"], {"keys": keys})
                existing = {row[0]: row[1] for row in await cur.fetchall()}
        return client.resolve_ids(batch, inserted, existing)

    # -- look up and cancel --------------------------------------------------------------

    def get_job(self, job_id: UUID | str) -> Job:
        """The job's current state; JobNotFound if there is none (or it was pruned)."""
        identifier = parse_job_id(job_id)
        try:
            with self.pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self.queries["get_job"], {"id": identifier})
                row = cur.fetchone()
        except _DB_ERRORS as error:
            raise unavailable(error) from error
        if row is None:
            raise JobNotFound(identifier)
        return Job.from_row(row)

    async def aget_job(self, job_id: UUID | str) -> Job:
        identifier = parse_job_id(job_id)
        try:
            pool = await self.async_pool()
            async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(self.queries["get_job"], {"id": identifier})
                row = await cur.fetchone()
        except _DB_ERRORS as error:
            raise unavailable(error) from error
        if row is None:
            raise JobNotFound(identifier)
        return Job.from_row(row)

    def cancel(self, job_id: UUID | str, reason: str = "cancelled by request") -> str:
        """Cancel a job: 'cancelled' (it was waiting), 'requested' (it is running and will be
        told), or 'finished' (nothing to do). JobNotFound if there is no such job."""
        identifier = parse_job_id(job_id)
        try:
            with self.pool().connection() as conn:
                row = conn.execute(
                    self.queries["cancel_job"], {"id": identifier, "reason": reason}
                ).fetchone()
        except _DB_ERRORS as error:
            raise unavailable(error) from error
        outcome = _cancel_outcome(row)
        if outcome == "finished":
            self.get_job(identifier)  # raises JobNotFound when it does not exist
        return outcome

    async def acancel(self, job_id: UUID | str, reason: str = "cancelled by request") -> str:
        identifier = parse_job_id(job_id)
        try:
            pool = await self.async_pool()
            async with pool.connection() as conn:
                cur = await conn.execute(
                    self.queries["cancel_job"], {"id": identifier, "reason": reason}
                )
                row = await cur.fetchone()
        except _DB_ERRORS as error:
            raise unavailable(error) from error
        outcome = _cancel_outcome(row)
        if outcome == "finished":
            await self.aget_job(identifier)  # raises JobNotFound when it does not exist
        return outcome

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> list[str]:
        settings = self.settings.database
        applied = migrate(settings.url, settings.schema_name, settings.connect_timeout)
        return [f"{migration.version:03d}_{migration.name}" for migration in applied]

    def pool(self) -> psycopg_pool.ConnectionPool:
        if self._pool is None:
            db = self.settings.database
            self._pool = sync_pool(db.url, "client", db.pool_size, db.connect_timeout)
            self._pool.open(wait=False)
        return self._pool

    async def async_pool(self) -> psycopg_pool.AsyncConnectionPool:
        if self._async_pool is None:
            db = self.settings.database
            self._async_pool = async_pool(db.url, "client", db.pool_size, db.connect_timeout)
            await self._async_pool.open(wait=False)
        return self._async_pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = None
        self.close()


def _cancel_outcome(row: tuple[Any, ...] | None) -> str:
    if row is None:  # the statement always returns one row
        raise RuntimeError("cancel_job returned no row")
    if row[0]:
        return "cancelled"
    if row[1]:
        return "requested"
    return "finished"


def _flatten(settings: Settings) -> dict[str, Any]:
    """Dotted keys of every setting, so explicit arguments can be layered on top."""
    flat: dict[str, Any] = {}
    for section, values in settings.model_dump(by_alias=True).items():
        if isinstance(values, dict) and section != "queues":
            for key, value in values.items():
                flat[f"{section}.{key}"] = value
        else:
            flat[section] = values
    return flat
