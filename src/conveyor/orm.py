"""Transactional enqueue through an ORM: find the psycopg connection inside its transaction.

`enqueue(..., connection=x)` writes the job in `x`'s open transaction, so the job exists
if and only if that transaction commits. `x` may be a psycopg 3 connection, or the handle
an ORM gives on one:

- SQLAlchemy >= 2 (`postgresql+psycopg://`): a `Session` (or a `scoped_session`) or a
  `Connection`; for `aenqueue`, an `AsyncSession` (or `async_scoped_session`) or an
  `AsyncConnection`. The DBAPI connection under the
  ORM's current transaction is used (a transaction is begun if none is, exactly as the
  ORM's next statement would), never a new connection from the pool.
- Django >= 4.2 with the psycopg 3 backend: `django.db.connection` or
  `django.db.connections[alias]`, inside `transaction.atomic()`.

SQLAlchemy and Django are optional: they are never imported here. An object that came
from one of them was made by its already imported modules, so `sys.modules` says whether
to look at all. A psycopg2 connection (either ORM on the psycopg2 driver) or any other
object is a TypeError saying what is accepted, raised before anything is written.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import psycopg

from conveyor.errors import EnqueueError

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from sqlalchemy.engine import Connection as AlchemyConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as AlchemyAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    # What `enqueue(connection=...)` and `aenqueue(connection=...)` accept.
    TransactionHandle: TypeAlias = (
        psycopg.Connection[Any] | Session | AlchemyConnection | BaseDatabaseWrapper
    )
    AsyncTransactionHandle: TypeAlias = (
        psycopg.AsyncConnection[Any] | AsyncSession | AlchemyAsyncConnection
    )
else:
    TransactionHandle: TypeAlias = Any
    AsyncTransactionHandle: TypeAlias = Any

ACCEPTED = (
    "a psycopg 3 connection, a SQLAlchemy Session or Connection on the psycopg driver "
    "(postgresql+psycopg://), or Django's connection with the psycopg 3 backend"
)
ACCEPTED_ASYNC = (
    "a psycopg 3 AsyncConnection, or a SQLAlchemy AsyncSession or AsyncConnection on the "
    "psycopg driver (postgresql+psycopg://)"
)

__all__ = ["AsyncTransactionHandle", "TransactionHandle", "async_connection", "sync_connection"]


def sync_connection(handle: object) -> psycopg.Connection[Any]:
    """The psycopg connection whose open transaction `enqueue(connection=handle)` joins."""
    if isinstance(handle, psycopg.Connection):
        return handle
    if isinstance(handle, psycopg.AsyncConnection):
        raise TypeError("connection= is a psycopg AsyncConnection: pass it to aenqueue")
    raw = _from_sqlalchemy(handle)
    if raw is None:
        raw = _from_django(handle)
    if raw is None:
        raise TypeError(f"connection= must be {ACCEPTED}, not {_kind(handle)}")
    if isinstance(raw, psycopg.Connection):
        return _in_transaction(raw)
    raise TypeError(f"connection= runs on {_kind(raw)}; Conveyor needs {ACCEPTED}")


async def async_connection(handle: object) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection whose open transaction `aenqueue(connection=handle)` joins."""
    if isinstance(handle, psycopg.AsyncConnection):
        return handle
    if isinstance(handle, psycopg.Connection):
        raise TypeError("connection= is a sync psycopg Connection: pass it to enqueue")
    raw = await _from_sqlalchemy_async(handle)
    if raw is None:
        if _is_sync_sqlalchemy(handle) or _is_django(handle):
            raise TypeError(
                f"connection= is a sync {_kind(handle)}: pass it to enqueue, or give "
                f"aenqueue {ACCEPTED_ASYNC}"
            )
        raise TypeError(f"connection= must be {ACCEPTED_ASYNC}, not {_kind(handle)}")
    if isinstance(raw, psycopg.AsyncConnection):
        return _in_transaction(raw)
    raise TypeError(f"connection= runs on {_kind(raw)}; Conveyor needs {ACCEPTED_ASYNC}")


Raw = TypeVar("Raw", psycopg.Connection[Any], psycopg.AsyncConnection[Any])


def _in_transaction(raw: Raw) -> Raw:
    """An ORM handle in autocommit mode would commit the job on its own, outside the
    transaction the caller meant: a mistake to report, not to run."""
    if raw.autocommit:
        raise EnqueueError(
            "connection= is in autocommit mode, so the job would not be part of your "
            "transaction: enqueue inside session.begin() / transaction.atomic(), or leave "
            "connection= out to enqueue (and commit) on Conveyor's own pool"
        )
    return raw


def _is_sync_sqlalchemy(handle: object) -> bool:
    """Whether `handle` is a sync SQLAlchemy handle, asked without touching it."""
    if "sqlalchemy" not in sys.modules:
        return False
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    return isinstance(handle, Session | scoped_session | Connection)


def _from_sqlalchemy(handle: object) -> object | None:
    """The DBAPI connection of a sync Session or Connection (None: not one of those)."""
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(handle, scoped_session):  # Flask-SQLAlchemy's `db.session`, for one
        handle = handle()
    if isinstance(handle, Session):
        # Begins the session's transaction if it has none, as its next query would.
        connection = handle.connection()
    elif isinstance(handle, Connection):
        connection = handle
        if not connection.in_transaction():
            connection.begin()  # what autobegin does on the connection's next statement
    else:
        return None
    return connection.connection.driver_connection


async def _from_sqlalchemy_async(handle: object) -> object | None:
    if "sqlalchemy.ext.asyncio" not in sys.modules:
        return None
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

    if isinstance(handle, async_scoped_session):
        handle = handle()
    if isinstance(handle, AsyncSession):
        connection = await handle.connection()
    elif isinstance(handle, AsyncConnection):
        connection = handle
        if not connection.in_transaction():
            await connection.begin()
    else:
        return None
    raw = await connection.get_raw_connection()
    return raw.driver_connection


def _django_wrapper(handle: object) -> Any | None:
    """The database wrapper `handle` is, or stands for (`django.db.connection` is a proxy
    to the current thread's wrapper of the default database); None: not Django's."""
    if "django.db" not in sys.modules:
        return None
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.utils.connection import ConnectionProxy

    if isinstance(handle, ConnectionProxy):
        handle = vars(handle)["_connections"][vars(handle)["_alias"]]
    return handle if isinstance(handle, BaseDatabaseWrapper) else None


def _is_django(handle: object) -> bool:
    return _django_wrapper(handle) is not None


def _from_django(handle: object) -> object | None:
    """The psycopg connection of a Django database wrapper (None: not one)."""
    handle = _django_wrapper(handle)
    if handle is None:
        return None
    if getattr(handle, "vendor", None) != "postgresql":
        raise TypeError(
            f"connection= is Django's {getattr(handle, 'vendor', '?')} connection; "
            f"Conveyor needs {ACCEPTED}"
        )
    if handle.get_autocommit():
        raise EnqueueError(
            "connection= is Django's connection outside transaction.atomic(), so the job "
            "would be committed on its own: enqueue inside transaction.atomic(), or leave "
            "connection= out to enqueue on Conveyor's own pool"
        )
    handle.ensure_connection()
    raw: object = handle.connection
    return raw


def _kind(thing: object) -> str:
    kind = type(thing)
    return f"{kind.__module__}.{kind.__qualname__}"
