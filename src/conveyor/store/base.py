"""What every group of store statements shares: a pool, the named queries, typed rows and
one translation of driver errors into Conveyor's own.

Nothing above the store sees a psycopg class: callers get dataclasses read by column name
and catch `DatabaseUnavailable` (transient: back off and retry), `StatementRejected`
(this statement will never pass) or `SchemaNotMigrated`.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self, TypeVar

import psycopg
import psycopg_pool
from psycopg import AsyncCursor
from psycopg.rows import RowMaker, dict_row

from conveyor.config import Settings
from conveyor.deadlines import DEFAULT_DEADLINE, postgres_deadline, renew
from conveyor.errors import (
    DatabaseUnavailable,
    SchemaNotMigrated,
    StatementRejected,
    StatementTimeout,
)
from conveyor.store.connect import async_pool, connect_kwargs, describe
from conveyor.store.queries import Queries, load_queries

Row = TypeVar("Row")
AsyncConn = psycopg.AsyncConnection[Any]
Params = dict[str, Any]

# A missing table, function or schema means `conveyor migrate` has not run (or is behind).
_NOT_MIGRATED = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.InvalidSchemaName,
)
# A primary demoted by a failover (or set default_transaction_read_only) still answers, so
# the pool's check passes its connections: they are drained, and the next checkout
# reconnects, which target_session_attrs=read-write steers to the new primary.
_UNAVAILABLE = (
    psycopg.OperationalError,
    # A primary demoted by a failover answers, but cannot write: an outage for us.
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg_pool.PoolTimeout,
    OSError,
)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a driver error raised inside the block into Conveyor's own exception."""
    try:
        yield
    except psycopg.errors.QueryCanceled as error:  # an OperationalError: test it first
        raise StatementTimeout(
            f"PostgreSQL stopped a statement that took too long ({describe(error)})"
        ) from error
    except _NOT_MIGRATED as error:
        raise SchemaNotMigrated(
            f"the schema is not migrated ({describe(error)}): run `conveyor migrate`"
        ) from error
    except _UNAVAILABLE as error:
        raise DatabaseUnavailable(f"PostgreSQL is unavailable: {describe(error)}") from error
    except psycopg.Error as error:
        raise StatementRejected(f"PostgreSQL refused a statement: {describe(error)}") from error


def by_name(row: type[Row]) -> Callable[[AsyncCursor[Any]], RowMaker[Row]]:
    """Like psycopg's class_row, reading columns by name, but the names are matched to
    positions once per statement rather than once per row: a claim builds one row per job,
    and a dict per row cost three times as much."""
    fields = [field.name for field in dataclasses.fields(row)]  # type: ignore[arg-type]

    def row_maker(cursor: AsyncCursor[Any]) -> RowMaker[Row]:
        names = [column.name for column in cursor.description or ()]
        missing = [name for name in fields if name not in names]
        if missing:
            raise RuntimeError(f"{row.__name__}: the statement returns no column {missing}")
        take = operator.itemgetter(*(names.index(name) for name in fields))
        make: Callable[..., Row] = row
        if len(fields) == 1:  # itemgetter of one index returns the value, not a tuple
            return lambda values: make(take(values))
        return lambda values: make(*take(values))

    return row_maker


class StoreBase:
    """A pool and the named queries of one schema; `transaction()` binds one connection."""

    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool | None,
        schema: str,
        *,
        connection: AsyncConn | None = None,
    ) -> None:
        self._pool = pool
        self.schema = schema
        self.queries: Queries = load_queries(schema)
        self._bound = connection
        self._owns_pool = False
        self.deadline = DEFAULT_DEADLINE

    @classmethod
    async def open(cls, settings: Settings, role: str, size: int | None = None) -> Self:
        """A store with its own pool (`database.pool_size` connections unless `size`);
        the pool connects lazily, so opening never fails on an outage."""
        db = settings.database
        pool = async_pool(db.url, role, size or db.pool_size, db.connect_timeout, db.pooler_mode)
        await pool.open(wait=False)
        store = cls(pool, db.schema_name)
        store._owns_pool = True
        store.deadline = settings.liveness.database_deadline
        return store

    @classmethod
    @asynccontextmanager
    async def connected(
        cls, settings: Settings, role: str, connect_timeout: float
    ) -> AsyncIterator[Self]:
        """A store on one fresh connection, closed on leaving: for probes, which must hold
        nothing between checks and must report why a connection failed (a pool would only
        say that it timed out waiting)."""
        db = settings.database
        options = connect_kwargs(role, connect_timeout, db.pooler_mode)
        with database_errors():
            conn = await psycopg.AsyncConnection.connect(db.url, **options)
        try:
            yield cls(None, db.schema_name, connection=conn)
        finally:
            with database_errors():
                await conn.close()

    async def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            await self._pool.close()

    # -- connections -------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """The bound connection, or one from the pool; driver errors are translated."""
        with database_errors():
            if self._bound is not None:
                renew(self._bound)
                yield self._bound
                return
            if self._pool is None:
                raise RuntimeError("this store has neither a pool nor a connection")
            async with self._pool.connection() as conn:
                try:
                    with postgres_deadline(conn, self.deadline, "a statement"):
                        yield conn
                except psycopg.errors.ReadOnlySqlTransaction:
                    await self._pool.drain()
                    raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """A store bound to one connection inside one transaction: every method called on
        it commits together, or not at all."""
        async with self.connection() as conn, conn.transaction():
            yield self.bound_to(conn)

    def bound_to(self, conn: AsyncConn) -> Self:
        """The same statements, run on `conn` (the caller's transaction)."""
        return type(self)(self._pool, self.schema, connection=conn)

    # -- statements --------------------------------------------------------------------

    async def _rows(
        self, name: str, params: Params, row: type[Row], *, prepare: bool | None = None
    ) -> list[Row]:
        """Every row of statement `name`, each built as `row(**columns)` by column name."""
        async with self.connection() as conn, conn.cursor(row_factory=by_name(row)) as cur:
            await cur.execute(self.queries[name], params, prepare=prepare)
            return await cur.fetchall()

    async def _row(
        self, name: str, params: Params, row: type[Row], *, prepare: bool | None = None
    ) -> Row | None:
        rows = await self._rows(name, params, row, prepare=prepare)
        return rows[0] if rows else None

    async def _dicts(
        self, name: str, params: Params, *, prepare: bool | None = None
    ) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name, for wide read-only reports."""
        async with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self.queries[name], params, prepare=prepare)
            return await cur.fetchall()

    async def _execute(self, name: str, params: Params, *, prepare: bool | None = None) -> int:
        """Run a statement for its effect; return the number of rows it touched."""
        async with self.connection() as conn, conn.cursor() as cur:
            await cur.execute(self.queries[name], params, prepare=prepare)
            return cur.rowcount
