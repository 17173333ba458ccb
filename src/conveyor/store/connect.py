"""Connection set-up shared by every process: fast JSON, short timeouts, clear errors."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor.deadlines import TCP_OPTIONS, pool_check

# PostgreSQL returns jsonb as text; orjson parses it several times faster than json.
set_json_loads(orjson.loads)
set_json_dumps(lambda value: orjson.dumps(value).decode())

APPLICATION_NAME = "conveyor"


def connect_kwargs(
    role: str, connect_timeout: float, pooler_mode: str = "session"
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "application_name": f"{APPLICATION_NAME}-{role}",
        "connect_timeout": max(1, int(connect_timeout)),
        "autocommit": True,
        **TCP_OPTIONS,
    }
    if pooler_mode == "transaction":
        # Consecutive statements of one client run on different server connections behind
        # a transaction-mode pooler: psycopg's prepared statements (_pg3_0, ...) would
        # collide there or be missing, and PgBouncer 1.18 drops the `options` parameter.
        kwargs["prepare_threshold"] = None
    else:
        # Every Conveyor statement is short; JIT compilation costs them hundreds of ms
        # whenever the planner's estimate for a big table crosses jit_above_cost.
        kwargs["options"] = "-c jit=off"
    return kwargs


def _pool_options(role: str, size: int, connect_timeout: float, pooler_mode: str) -> dict[str, Any]:
    return {
        "min_size": 1,
        "max_size": size,
        "kwargs": connect_kwargs(role, connect_timeout, pooler_mode),
        "timeout": connect_timeout,
        "open": False,
        "name": f"conveyor-{role}",
    }


def sync_pool(
    url: str, role: str, size: int, connect_timeout: float, pooler_mode: str = "session"
) -> ConnectionPool:
    return ConnectionPool(
        url,
        check=ConnectionPool.check_connection,
        **_pool_options(role, size, connect_timeout, pooler_mode),
    )


def async_pool(
    url: str, role: str, size: int, connect_timeout: float, pooler_mode: str = "session"
) -> AsyncConnectionPool:
    # check_connection replaces connections PostgreSQL ended (restart, terminated backend)
    # before handing them out, instead of failing the caller's first statement.
    return AsyncConnectionPool(
        url,
        check=pool_check(connect_timeout / 2),
        **_pool_options(role, size, connect_timeout, pooler_mode),
    )


def describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def postgres_problem(url: str, timeout: float) -> str | None:
    """Why PostgreSQL at `url` cannot be used (one line), or None if it answers."""
    try:
        psycopg.connect(url, connect_timeout=max(1, round(timeout))).close()
    except psycopg.Error as error:
        return describe(error)
    return None
