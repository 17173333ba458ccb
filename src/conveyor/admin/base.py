"""Connections, input checks and the audit trail shared by every admin operation."""

from __future__ import annotations

import getpass
import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import psycopg
import psycopg_pool
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from conveyor.admin.errors import AdminError, AdminNotFound, AdminUnavailable
from conveyor.config import Settings
from conveyor.ids import parse_job_id
from conveyor.lanes import LANES, REDIS_ERRORS, Keys, LaneName, Lanes, redis_client
from conveyor.store import Queries, load_queries
from conveyor.store.connect import OPERATIONAL_ERRORS, async_pool, describe
from conveyor.tasks import check_queue_name

Conn = psycopg.AsyncConnection[Any]
DB_ERRORS = (*OPERATIONAL_ERRORS, psycopg_pool.PoolTimeout)
MAX_LIMIT = 1000
MAX_IDS = 10_000
SAMPLE = 20


def default_actor(surface: str = "cli") -> str:
    """`cli:<os user>`: who an audit row names when a person ran the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in a bare container
        user = str(os.getuid())
    return f"{surface}:{user}"


class AdminBase:
    """Holds the pool and the Redis client; the operations live in the mixins."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: AsyncConnectionPool | None = None,
        redis_connection: aioredis.Redis | None = None,
        pool_size: int = 4,
    ) -> None:
        self.settings = settings
        self.queries: Queries = load_queries(settings.database.schema_name)
        self.keys = Keys(settings.redis.key_prefix)
        self.channel = f"{settings.database.schema_name}_jobs"
        self._pool = pool
        self._redis = redis_connection
        self._owns_pool = pool is None
        self._owns_redis = redis_connection is None
        self._pool_size = pool_size
        self._lanes: Lanes | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and the Redis client (neither connects until first used)."""
        if self._pool is None:
            db = self.settings.database
            # connect_kwargs turns JIT off: a cold stats() spent a second compiling.
            self._pool = async_pool(db.url, "admin", max(1, self._pool_size), db.connect_timeout)
            await self._pool.open(wait=False)
        if self._redis is None:
            self._redis = redis_client(self.settings)

    async def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
        if self._redis is not None and self._owns_redis:
            await self._redis.aclose()
        self._pool = self._redis = self._lanes = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("use `async with Admin(settings) as admin:` (or await open())")
        return self._pool

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("use `async with Admin(settings) as admin:` (or await open())")
        return self._redis

    @property
    def lanes(self) -> Lanes:
        if self._lanes is None:
            self._lanes = Lanes(self.redis, self.keys)
        return self._lanes

    # -- PostgreSQL ----------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; outages become AdminUnavailable, timeouts AdminError."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except psycopg.errors.QueryCanceled as error:  # an OperationalError: test it first
            raise AdminError(
                f"the query took too long and was stopped ({describe(error)})"
            ) from None
        except DB_ERRORS as error:
            raise AdminUnavailable(f"PostgreSQL is unavailable: {describe(error)}") from error

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetch_all(
        self, conn: Conn, name: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        # prepare=False: plans are made for the actual values, so the optional filters
        # (NULL or not) fold away and partial indexes stay usable.
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self.queries[name], params or {}, prepare=False)
            return await cur.fetchall()

    async def fetch_one(
        self, conn: Conn, name: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        rows = await self.fetch_all(conn, name, params)
        return rows[0] if rows else None

    async def audit(
        self,
        conn: Conn,
        actor: str,
        action: str,
        target: str | None,
        detail: dict[str, Any],
        result: str,
    ) -> None:
        """One audit_log row, written on `conn` inside the action's own transaction."""
        await conn.execute(
            self.queries["admin_insert_audit"],
            {
                "actor": actor,
                "action": action,
                "target": target,
                "detail": Jsonb(detail),
                "result": result,
            },
        )

    async def require_queue(self, conn: Conn, queue: str) -> None:
        """AdminNotFound unless the queue has a row, a job, or an entry in the settings."""
        if queue in self.settings.queues:
            return
        row = await self.fetch_one(conn, "admin_queue_exists", {"queue": queue})
        if not (row and row["known"]):
            raise AdminNotFound(f"unknown queue {queue!r}")

    # -- Redis ---------------------------------------------------------------------------

    async def redis_call(self, what: str, call: Any) -> Any:
        """Await a Redis call; an outage becomes AdminUnavailable naming `what`."""
        try:
            return await call
        except REDIS_ERRORS as error:
            raise AdminUnavailable(f"Redis is unavailable ({what}): {error}") from error


# -- input checks (each raises AdminError with the reason) -----------------------------------


def check_job_id(value: object) -> UUID:
    try:
        return parse_job_id(value)
    except ValueError as error:
        raise AdminError(str(error)) from None


def check_job_ids(values: Sequence[object]) -> list[UUID]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise AdminError("job ids must be given as a list")
    if not values:
        raise AdminError("no job ids given")
    if len(values) > MAX_IDS:
        raise AdminError(f"at most {MAX_IDS} job ids per call, not {len(values)}")
    return list(dict.fromkeys(check_job_id(value) for value in values))


def check_queue(value: object) -> str:
    if not isinstance(value, str):
        raise AdminError(f"queue name must be text, not {type(value).__name__}")
    try:
        return check_queue_name(value)
    except ValueError as error:
        raise AdminError(str(error)) from None


def check_optional_queue(value: object) -> str | None:
    return None if value is None else check_queue(value)


def check_lane(value: object) -> LaneName | None:
    if value is None:
        return None
    for lane in LANES:
        if value == lane:
            return lane
    raise AdminError(f"lane must be one of {', '.join(LANES)}, not {value!r}")


def check_count(value: object, name: str, maximum: int = MAX_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise AdminError(f"{name} must be a whole number from 1 to {maximum}, not {value!r}")
    return value


MAX_AGE_SECONDS = 100 * 365.25 * 86400


def check_seconds(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdminError(f"{name} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise AdminError(f"{name} must be a non-negative number of seconds, not {value!r}")
    if seconds > MAX_AGE_SECONDS:
        # PostgreSQL cannot subtract more than this from now(); say so instead of a 500.
        raise AdminError(f"{name} must be at most {MAX_AGE_SECONDS:.0f} seconds (100 years)")
    return seconds


def check_actor(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AdminError("actor must be a non-empty name (who is doing this, for the audit log)")
    if len(value) > 200:
        raise AdminError("actor must be at most 200 characters")
    return value.strip()


def check_text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AdminError(f"{name} must be non-empty text")
    if len(value) > 500:
        raise AdminError(f"{name} must be at most 500 characters")
    return value
