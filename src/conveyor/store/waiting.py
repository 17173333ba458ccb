"""Waiting for one job to end, woken by PostgreSQL: no polling.

A waiter opens a session of its own (notifications reach only the connection that
listens; behind a transaction-mode pooler only `database.direct_url` gives one), then:

1. LISTENs on "<schema>_job_ended";
2. marks the job awaited and reads it in one statement (`mark_job_awaited`). From then on
   the statement that ends the job, whichever it is, fires the jobs_awaited_ended trigger
   (migration 018), which notifies the job's id on commit. A job that ended before the
   mark is read right there (`read_job_end`), so an end is never missed between the two;
3. waits for its id on the channel, or for the timeout, and reads the job once more.

The only statements after the first read answer a notification for this very job: the
wait itself is a blocking read on the socket, so a waiter costs PostgreSQL nothing while
the job runs, and jobs nobody waits on are never announced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from conveyor.config import Settings
from conveyor.errors import ConveyorError, JobNotFound, JobWaitTimeout
from conveyor.store.base import database_errors
from conveyor.store.connect import connect_kwargs
from conveyor.store.listen import CHANNEL_SLOT
from conveyor.store.queries import load_queries
from conveyor.vocabulary import TERMINAL

log = logging.getLogger("conveyor.client")

# A channel is an identifier (at most 63 bytes); the trigger takes the same prefix.
_SCHEMA_CHARS = 52


def job_end_channel(schema: str) -> str:
    return f"{schema[:_SCHEMA_CHARS]}_job_ended"


@dataclass(frozen=True)
class JobEnd:
    """A job as a waiter reads it: its status and, once ended, how (the raw stored result,
    still sealed where encryption applies)."""

    id: UUID
    status: str
    result: Any
    result_error: str | None
    last_error: str | None
    attempt: int
    max_attempts: int
    # How it ended, in the words of its last job_logs row (None until it has ended).
    final_message: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobEnd:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class _Session:
    """The statements of one wait, on one connection, sync or async alike."""

    def __init__(self, settings: Settings) -> None:
        db = settings.database
        if db.pooler_mode == "transaction" and not db.direct_url:
            # Through such a pooler a LISTEN lands on a server connection that other clients
            # use next: the wait would never hear its job end.
            raise ConveyorError(
                "waiting for a job needs a PostgreSQL session of its own: with "
                "database.pooler_mode = transaction, set database.direct_url"
            )
        self.url = db.direct_url or db.url
        self.kwargs = connect_kwargs("waiter", db.connect_timeout)
        self.queries = load_queries(db.schema_name)
        self.channel = job_end_channel(db.schema_name)

    def listen(self, conn: Any) -> bytes:
        channel = sql.Identifier(self.channel).as_bytes(conn)
        return self.queries["listen_for_job_ends"].replace(CHANNEL_SLOT, channel)


def _deadline(timeout: float | None) -> Callable[[], float | None]:
    """Seconds left until the timeout (None: no timeout), from a monotonic clock."""
    if timeout is None:
        return lambda: None
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if not number or timeout != timeout or timeout < 0:  # NaN is not equal to itself
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
    ends = time.monotonic() + timeout
    return lambda: max(0.0, ends - time.monotonic())


def _found(job_id: UUID, row: dict[str, Any] | None, when: str) -> JobEnd:
    if row is None:
        raise JobNotFound(job_id)
    end = JobEnd.from_row(row)
    log.debug("waiting for job %s: read it %s: %s", job_id, when, end.status)
    return end


def wait_for_job_end(settings: Settings, job_id: UUID, timeout: float | None) -> JobEnd:
    """Block until the job has ended; its final state. JobNotFound if there is no such
    job (or it was deleted meanwhile), JobWaitTimeout after `timeout` seconds."""
    remaining = _deadline(timeout)
    session = _Session(settings)
    params = {"id": job_id}
    end: JobEnd | None = None  # None: the timeout passed first
    with (
        database_errors(),
        psycopg.Connection.connect(session.url, **session.kwargs) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        conn.execute(session.listen(conn))
        row = cur.execute(session.queries["mark_job_awaited"], params).fetchone()
        if row is None:
            row = cur.execute(session.queries["read_job_end"], params).fetchone()
        end = _found(job_id, row, "before waiting")
        while not end.ended:
            left = remaining()
            if left == 0.0 or not _notified_sync(conn, job_id, left):
                end = None
                break
            row = cur.execute(session.queries["read_job_end"], params).fetchone()
            end = _found(job_id, row, "on its notification")
    # Raised out here: a TimeoutError is an OSError, which database_errors would take for
    # an outage.
    if end is None:
        raise JobWaitTimeout(job_id, timeout)
    return end


async def await_job_end(
    settings: Settings,
    job_id: UUID,
    timeout: float | None,  # noqa: ASYNC109 - as the sync form; see JobHandles.await_job
) -> JobEnd:
    """`wait_for_job_end` for async callers: the event loop runs on while it waits."""
    remaining = _deadline(timeout)
    session = _Session(settings)
    params = {"id": job_id}
    end: JobEnd | None = None  # None: the timeout passed first
    with database_errors():
        async with (
            await psycopg.AsyncConnection.connect(session.url, **session.kwargs) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await conn.execute(session.listen(conn))
            await cur.execute(session.queries["mark_job_awaited"], params)
            row = await cur.fetchone()
            if row is None:
                await cur.execute(session.queries["read_job_end"], params)
                row = await cur.fetchone()
            end = _found(job_id, row, "before waiting")
            while not end.ended:
                left = remaining()
                if left == 0.0 or not await _notified(conn, job_id, left):
                    end = None
                    break
                await cur.execute(session.queries["read_job_end"], params)
                end = _found(job_id, await cur.fetchone(), "on its notification")
    if end is None:  # out here, as in wait_for_job_end
        raise JobWaitTimeout(job_id, timeout)
    return end


async def _notified(conn: psycopg.AsyncConnection[Any], job_id: UUID, left: float | None) -> bool:
    """True once the job's id is notified; False when `left` seconds passed without it."""
    wanted = str(job_id)
    async for note in conn.notifies(timeout=left):
        if note.payload == wanted:
            return True
    return False


def _notified_sync(conn: psycopg.Connection[Any], job_id: UUID, left: float | None) -> bool:
    wanted = str(job_id)
    return any(note.payload == wanted for note in conn.notifies(timeout=left))
