"""One statement sequence, run on a sync or an async connection.

An operation that callers need both ways (enqueue from a web handler and from a script)
is written once, as a plan: a generator that yields `(statement name, params)` steps,
receives each step's `Rows` (read by column name), and returns the result. The two
drivers below run a plan on a psycopg connection of either kind, translating driver
errors with `database_errors()`, so the decisions (which statement next, how rows become
the answer) exist in one place and the drivers only do I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self, TypeVar, cast

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from conveyor.config import Settings
from conveyor.store.base import AsyncConn, Params, StoreBase, database_errors
from conveyor.store.connect import connect_kwargs, sync_pool
from conveyor.store.queries import Queries, load_queries

T = TypeVar("T")
Row = TypeVar("Row")
Step = tuple[str, Params]
SyncConn = psycopg.Connection[Any]

__all__ = [
    "AsyncConn",
    "AsyncPlans",
    "Plan",
    "Rows",
    "SyncConn",
    "SyncStatements",
    "effect",
    "rows_as",
]


class Rows:
    """One step's rows, read by column name. They arrive as tuples (psycopg builds those in
    C) and become dicts only on request: a bulk insert returns thousands of rows and needs
    one column of them, or just their number."""

    __slots__ = ("names", "tuples")

    def __init__(self, names: list[str], tuples: list[tuple[Any, ...]]) -> None:
        self.names = names
        self.tuples = tuples

    def __len__(self) -> int:
        return len(self.tuples)

    def column(self, name: str) -> list[Any]:
        index = self.names.index(name)
        return [row[index] for row in self.tuples]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.names, row, strict=True)) for row in self.tuples]

    def first(self) -> dict[str, Any] | None:
        return dict(zip(self.names, self.tuples[0], strict=True)) if self.tuples else None


_NO_ROWS = Rows([], [])
# Yields the steps, is sent each step's rows, returns the operation's result.
Plan = Generator[Step, Rows, T]


def rows_as(row: type[Row], name: str, params: Params | None = None) -> Plan[list[Row]]:
    """The plan of a single statement whose rows become `row(**columns)`."""
    rows = yield name, params or {}
    return [row(**columns) for columns in rows.dicts()]


def effect(name: str, params: Params | None = None) -> Plan[None]:
    """The plan of a single statement run for its effect alone."""
    yield name, params or {}


# The drivers run inside `database_errors()` (see `_run_plan`), and are kept lean: the
# enqueue hot path goes through them.


def _drive_sync(conn: SyncConn, queries: Queries, plan: Plan[T]) -> T:
    with conn.cursor(row_factory=tuple_row) as cur:
        try:
            name, params = next(plan)
            while True:
                cur.execute(queries[name], params or None)
                columns = cur.description  # built afresh on each access
                if columns is None:  # a statement without RETURNING
                    rows = _NO_ROWS
                else:
                    rows = Rows([column.name for column in columns], cur.fetchall())
                name, params = plan.send(rows)
        except StopIteration as done:
            return cast(T, done.value)


async def _drive_async(conn: AsyncConn, queries: Queries, plan: Plan[T]) -> T:
    async with conn.cursor(row_factory=tuple_row) as cur:
        try:
            name, params = next(plan)
            while True:
                await cur.execute(queries[name], params or None)
                columns = cur.description  # built afresh on each access
                if columns is None:  # a statement without RETURNING
                    rows = _NO_ROWS
                else:
                    rows = Rows([column.name for column in columns], await cur.fetchall())
                name, params = plan.send(rows)
        except StopIteration as done:
            return cast(T, done.value)


class AsyncPlans(StoreBase):
    """Runs plans on the store's bound connection or on one from its pool."""

    @asynccontextmanager
    async def held_transaction(self) -> AsyncIterator[Self]:
        """This store bound to one connection of the pool inside one transaction, held
        across the caller's block (a batch) and committed when it ends, rolled back if it
        raises. Unlike `transaction()`, no deadline spans the block: the caller's own
        work between two statements may take any time (plans run without one too)."""
        if self._pool is None:
            raise RuntimeError("this store has no pool to take a connection from")
        with database_errors():
            async with self._pool.connection() as conn, conn.transaction():
                yield self.bound_to(conn)

    async def _run_plan(self, plan: Plan[T], *, atomic: bool = False) -> T:
        """`atomic`: every step in one transaction of our own, unless the store is bound
        to the caller's connection, whose transaction (and commit) is the caller's."""
        with database_errors():
            if self._bound is not None:
                return await _drive_async(self._bound, self.queries, plan)
            if self._pool is None:
                raise RuntimeError("this store has neither a pool nor a connection")
            async with self._pool.connection() as conn:
                try:
                    if not atomic:
                        return await _drive_async(conn, self.queries, plan)
                    async with conn.transaction():
                        return await _drive_async(conn, self.queries, plan)
                except psycopg.errors.ReadOnlySqlTransaction:
                    await self._pool.drain()  # see store.base: a demoted primary
                    raise


class SyncStatements:
    """The sync twin of `StoreBase`: a sync pool (or the caller's connection), the same
    named queries and the same translation of driver errors."""

    def __init__(
        self, pool: ConnectionPool | None, schema: str, *, connection: SyncConn | None = None
    ) -> None:
        self._pool = pool
        self.schema = schema
        self.queries: Queries = load_queries(schema)
        self._bound = connection
        self._owns_connection = False

    @classmethod
    def connect(
        cls,
        url: str,
        schema: str,
        role: str,
        connect_timeout: float = 5.0,
        pooler_mode: str = "session",
    ) -> Self:
        """Statements on one connection of their own, closed by `close()`."""
        with database_errors():
            conn = psycopg.connect(url, **connect_kwargs(role, connect_timeout, pooler_mode))
        statements = cls(None, schema, connection=conn)
        statements._owns_connection = True
        return statements

    @classmethod
    def open(cls, settings: Settings, role: str, size: int | None = None) -> Self:
        """Statements on a pool of their own that connects lazily (opening never fails)."""
        db = settings.database
        pool = sync_pool(db.url, role, size or db.pool_size, db.connect_timeout, db.pooler_mode)
        pool.open(wait=False)
        return cls(pool, db.schema_name)

    def close(self) -> None:
        if self._bound is None:
            if self._pool is not None:
                self._pool.close()
        elif self._owns_connection:
            self._bound.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def bound_to(self, conn: SyncConn) -> Self:
        """The same statements, run on `conn` (the caller's transaction)."""
        return type(self)(self._pool, self.schema, connection=conn)

    @contextmanager
    def held_transaction(self) -> Iterator[Self]:
        """These statements bound to one connection of the pool inside one transaction,
        held across the caller's block (a batch) and committed when it ends, rolled back
        if it raises."""
        if self._pool is None:
            raise RuntimeError("these statements have no pool to take a connection from")
        with database_errors(), self._pool.connection() as conn, conn.transaction():
            yield self.bound_to(conn)

    def _run_plan(self, plan: Plan[T], *, atomic: bool = False) -> T:
        """As `AsyncPlans._run_plan`, on a sync connection."""
        with database_errors():
            if self._bound is not None:
                return _drive_sync(self._bound, self.queries, plan)
            if self._pool is None:
                raise RuntimeError("these statements have neither a pool nor a connection")
            with self._pool.connection() as conn:
                try:
                    if not atomic:
                        return _drive_sync(conn, self.queries, plan)
                    with conn.transaction():
                        return _drive_sync(conn, self.queries, plan)
                except psycopg.errors.ReadOnlySqlTransaction:
                    self._pool.drain()  # see store.base: a demoted primary
                    raise
