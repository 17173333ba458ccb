"""Shared fixtures: every test gets its own PostgreSQL schema and its own Redis key prefix,
so tests run in any order, in parallel, against the real servers (never mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.queuer import Queuer
from conveyor.store import Store
from conveyor.store.connect import async_pool
from conveyor.store.migrate import migrate
from conveyor.store.work import WorkStatements
from conveyor.worker.runner import Worker, WorkerOptions
from tests.factories import REDIS_URL, make_settings, new_namespace

ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_DB = os.environ.get("CONVEYOR_TEST_DATABASE", "conveyor_test")


def database_url(admin_url: str = ADMIN_URL, name: str = TEST_DB) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def test_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute(
            b"SELECT 1 FROM pg_database WHERE datname = %s", (TEST_DB,)
        ).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{TEST_DB}"'.encode())
    return database_url()


def drop_namespace(db_url: str, schema: str, redis_url: str, prefix: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            b"WHERE datname = current_database() AND pid <> pg_backend_pid() "
            b"AND application_name LIKE 'conveyor%%' AND query LIKE %s",
            (f"%{schema}%",),
        )
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
    with contextlib.suppress(redis.exceptions.ConnectionError):
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def namespace(test_database: str) -> Iterator[tuple[str, str]]:
    schema, prefix = new_namespace()
    yield schema, prefix
    drop_namespace(test_database, schema, REDIS_URL, prefix)


@pytest.fixture
def settings_factory(test_database: str, namespace: tuple[str, str]) -> Callable[..., Settings]:
    schema, prefix = namespace

    def factory(**overrides: Any) -> Settings:
        return make_settings(test_database, schema, prefix, **overrides)

    return factory


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    result = settings_factory()
    migrate(result.database.url, result.database.schema_name)
    return result


@pytest.fixture
def app(settings: Settings) -> Iterator[Conveyor]:
    application = Conveyor(settings)
    yield application
    application.close()


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection with search_path on the test schema, for assertions."""
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        yield conn


class Running:
    """In-process queuer and workers, stopped and drained at the end of the test."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.stops: list[asyncio.Event] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.queuers: list[Queuer] = []
        self.workers: list[Worker] = []

    def queuer(self, **kwargs: Any) -> Queuer:
        settings = self.app.settings
        db = settings.database
        # Built here and opened in its task, as tests call this without awaiting.
        pool = async_pool(db.url, "queuer", 4, db.connect_timeout)
        lanes = Lanes.open(settings)
        queuer = Queuer(settings, Store(pool, db.schema_name), lanes, **kwargs)

        async def run(stop: asyncio.Event) -> None:
            await pool.open(wait=False)
            try:
                await queuer.run(stop)
            finally:
                await pool.close()
                await lanes.close()

        self._start(run)
        self.queuers.append(queuer)
        return queuer

    def worker(
        self,
        queues: list[str],
        concurrency: int = 10,
        *,
        store: WorkStatements | None = None,
        **kwargs: Any,
    ) -> Worker:
        """A worker on the app's tasks; on `store` if given (the caller closes it)."""
        options = WorkerOptions(queues=queues, concurrency=concurrency, **kwargs)
        worker = Worker(
            self.app.settings,
            self.app.tasks,
            options,
            middleware=self.app.middleware,
            store=store,
        )
        self._start(worker.run)
        self.workers.append(worker)
        return worker

    def _start(self, run: Callable[[asyncio.Event], Any]) -> None:
        stop = asyncio.Event()
        self.stops.append(stop)
        self.tasks.append(asyncio.get_running_loop().create_task(run(stop)))

    async def stop(self) -> None:
        for stop in self.stops:
            stop.set()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        self.stops.clear()
        self.tasks.clear()
        for result in results:
            if isinstance(result, BaseException):
                raise result


@pytest.fixture
async def running(app: Conveyor) -> AsyncIterator[Running]:
    system = Running(app)
    yield system
    await system.stop()
    await app.aclose()


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Poll a condition (tests wait for outcomes; they never assert on timing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(interval)


def status_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(b"SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    return {row[0]: row[1] for row in rows}


from tests.processes import procs  # noqa: E402, F401 - fixture shared by the fault tests
