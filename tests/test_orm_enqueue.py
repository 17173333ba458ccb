"""Transactional enqueue through SQLAlchemy and Django, against the real PostgreSQL: the job
exists if and only if the ORM's transaction commits, and nobody sees it before."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from conveyor.app import Conveyor
from conveyor.errors import EnqueueError
from conveyor.tasks import Task


class Boom(Exception):
    pass


def alchemy_url(app: Conveyor) -> str:
    return app.settings.database.url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def noop(app: Conveyor) -> Task:
    @app.task(queue="orm", name="noop")
    def noop(payload: Any) -> None:
        return None

    return noop


@pytest.fixture
def engine(app: Conveyor) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(alchemy_url(app), pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(app: Conveyor) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(alchemy_url(app), pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


def job_payloads(db: psycopg.Connection[Any]) -> list[Any]:
    return [row[0] for row in db.execute(b"SELECT payload FROM jobs ORDER BY created").fetchall()]


# -- SQLAlchemy ----------------------------------------------------------------------------


def test_session_commit_writes_the_job_seen_by_nobody_before(
    app: Conveyor, noop: Task, engine: Engine, db: psycopg.Connection[Any]
) -> None:
    with Session(engine) as session:
        session.execute(sqlalchemy.text("CREATE TEMP TABLE orders (id int)"))
        session.execute(sqlalchemy.text("INSERT INTO orders VALUES (1)"))
        job_id = app.enqueue(noop, {"order": 1}, connection=session)
        assert job_payloads(db) == []
        # The ORM's own transaction: it sees the job it is about to commit.
        seen = session.execute(
            sqlalchemy.text(f'SELECT count(*) FROM "{app.settings.database.schema_name}".jobs')
        ).scalar()
        assert seen == 1
        session.commit()
    assert job_payloads(db) == [{"order": 1}]
    assert app.get_job(job_id).status == "queued"


def test_session_rollback_and_exception_leave_no_job(
    app: Conveyor, noop: Task, engine: Engine, db: psycopg.Connection[Any]
) -> None:
    with Session(engine) as session:
        app.enqueue(noop, {"n": 1}, connection=session)
        session.rollback()
    with pytest.raises(Boom), Session(engine) as session, session.begin():
        app.enqueue_many(noop, [{"n": 2}, {"n": 3}], connection=session)
        raise Boom
    with Session(engine) as session:
        app.enqueue(noop, {"n": 4}, connection=session)
        # Closed without commit: the session rolls back.
    assert job_payloads(db) == []


def test_connection_in_begin_block_and_commit_as_you_go(
    app: Conveyor, noop: Task, engine: Engine, db: psycopg.Connection[Any]
) -> None:
    with engine.begin() as connection:
        app.enqueue(noop, {"n": 1}, connection=connection)
    with pytest.raises(Boom), engine.begin() as connection:
        app.enqueue(noop, {"n": 2}, connection=connection)
        raise Boom
    with engine.connect() as connection:
        # No transaction yet: enqueue begins one, as the connection's next statement would.
        app.enqueue(noop, {"n": 3}, connection=connection)
        assert connection.in_transaction()
        assert job_payloads(db) == [{"n": 1}]
        connection.commit()
        app.enqueue(noop, {"n": 4}, connection=connection)
        # Closed without commit: rolled back.
    assert job_payloads(db) == [{"n": 1}, {"n": 3}]


def test_scoped_session(
    app: Conveyor, noop: Task, engine: Engine, db: psycopg.Connection[Any]
) -> None:
    registry = scoped_session(sessionmaker(engine))
    try:
        app.enqueue(noop, {"n": 1}, connection=registry)
        assert job_payloads(db) == []
        registry.commit()
        app.enqueue(noop, {"n": 2}, connection=registry)
        registry.rollback()
    finally:
        registry.remove()
    assert job_payloads(db) == [{"n": 1}]


def test_dedup_through_a_session(
    app: Conveyor, noop: Task, engine: Engine, db: psycopg.Connection[Any]
) -> None:
    with Session(engine) as session:
        first = app.enqueue(noop, {"n": 1}, idempotency_key="order-1", connection=session)
        again = app.enqueue(noop, {"n": 2}, idempotency_key="order-1", connection=session)
        session.commit()
    assert first == again
    assert job_payloads(db) == [{"n": 1}]


def test_autocommit_connection_is_refused(
    app: Conveyor, noop: Task, engine: Engine, db: psycopg.Connection[Any]
) -> None:
    autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as connection, pytest.raises(EnqueueError, match="autocommit"):
        app.enqueue(noop, {"n": 1}, connection=connection)
    assert job_payloads(db) == []


async def test_async_session_commit_and_rollback(
    app: Conveyor, noop: Task, async_engine: AsyncEngine, db: psycopg.Connection[Any]
) -> None:
    async with AsyncSession(async_engine) as session:
        await app.aenqueue(noop, {"n": 1}, connection=session)
        await session.rollback()
        await app.aenqueue(noop, {"n": 2}, connection=session)
        assert job_payloads(db) == []
        await session.commit()
    with pytest.raises(Boom):
        async with async_engine.begin() as connection:
            await app.aenqueue(noop, {"n": 3}, connection=connection)
            raise Boom
    async with async_engine.begin() as connection:
        await app.aenqueue_many(noop, [{"n": 4}], connection=connection)
    assert job_payloads(db) == [{"n": 2}, {"n": 4}]


async def test_async_autocommit_connection_is_refused(
    app: Conveyor, noop: Task, async_engine: AsyncEngine, db: psycopg.Connection[Any]
) -> None:
    async with async_engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(EnqueueError, match="autocommit"):
            await app.aenqueue(noop, {"n": 1}, connection=autocommit)
    assert job_payloads(db) == []


async def test_sync_and_async_handles_are_not_mixed_up(
    app: Conveyor, noop: Task, engine: Engine, async_engine: AsyncEngine
) -> None:
    with Session(engine) as session:
        with pytest.raises(TypeError, match="pass it to enqueue"):
            await app.aenqueue(noop, {}, connection=session)  # type: ignore[arg-type]
        assert not session.in_transaction(), "a refused handle is left as it was"
    async with AsyncSession(async_engine) as async_session:
        with pytest.raises(TypeError, match="AsyncSession"):
            app.enqueue(noop, {}, connection=async_session)  # type: ignore[arg-type]


def test_other_drivers_and_objects_are_a_type_error(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    sqlite_engine = sqlalchemy.create_engine("sqlite://")
    try:
        session = Session(sqlite_engine)
        with session, pytest.raises(TypeError, match=r"runs on sqlite3\.Connection.*psycopg"):
            app.enqueue(noop, {}, connection=session)
    finally:
        sqlite_engine.dispose()
    # A DB-API 2 connection of another driver, as a psycopg2 one would be.
    other = sqlite3.connect(":memory:")
    try:
        with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
            app.enqueue(noop, {}, connection=other)  # type: ignore[arg-type]
    finally:
        other.close()
    with pytest.raises(TypeError, match="a SQLAlchemy Session or Connection"):
        app.enqueue(noop, {}, connection="postgresql://somewhere")  # type: ignore[arg-type]
    assert job_payloads(db) == []


# -- Django --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_db(test_database: str) -> Iterator[None]:
    import django
    from django.conf import settings as django_settings
    from django.db import connections

    if not django_settings.configured:
        url = psycopg.conninfo.conninfo_to_dict(test_database)
        django_settings.configure(
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": url["dbname"],
                    "USER": url["user"],
                    "HOST": url["host"],
                    "PORT": url["port"],
                }
            },
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    yield
    connections.close_all()


@pytest.fixture
def django_conn(django_db: None, settings: Any) -> Iterator[Any]:
    from django.db import connection, connections

    assert settings.database.url.endswith("/" + connections["default"].settings_dict["NAME"])
    yield connection
    connections.close_all()


def test_django_atomic_commit_and_exception(
    app: Conveyor, noop: Task, django_conn: Any, db: psycopg.Connection[Any]
) -> None:
    from django.db import connections, transaction

    with transaction.atomic():
        job_id = app.enqueue(noop, {"n": 1}, connection=django_conn)
        assert job_payloads(db) == []
    assert job_payloads(db) == [{"n": 1}]
    assert app.get_job(job_id).status == "queued"
    with pytest.raises(Boom), transaction.atomic():
        app.enqueue(noop, {"n": 2}, connection=connections["default"])
        raise Boom
    with transaction.atomic():
        with pytest.raises(Boom), transaction.atomic():  # a savepoint rolled back
            app.enqueue(noop, {"n": 3}, connection=django_conn)
            raise Boom
        app.enqueue(noop, {"n": 4}, connection=django_conn)
    assert job_payloads(db) == [{"n": 1}, {"n": 4}]


def test_django_outside_atomic_is_refused(
    app: Conveyor, noop: Task, django_conn: Any, db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(EnqueueError, match=r"transaction\.atomic"):
        app.enqueue(noop, {"n": 1}, connection=django_conn)
    assert job_payloads(db) == []


async def test_django_connection_to_aenqueue_is_a_type_error(
    app: Conveyor, noop: Task, django_conn: Any
) -> None:
    with pytest.raises(TypeError, match="pass it to enqueue"):
        await app.aenqueue(noop, {}, connection=django_conn)
