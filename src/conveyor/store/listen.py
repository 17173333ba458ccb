"""The queuer's own PostgreSQL session: it LISTENs for new jobs and holds the
maintenance leader lock.

Both need a connection that outlives any statement, so it does not come from the pool:
notifications reach only the connection that listens, and a session lock ends with its
session, so a queuer that dies or loses this connection hands maintenance over at once.

One task owns the connection. psycopg's `notifies()` holds the connection's lock while it
waits, so no other statement could run beside it: the same task asks for the leader lock
between waits. `close()` ends that task before it closes the connection, because closing
a socket the event loop is still watching is undefined (uvloop aborts the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from conveyor import watchdog
from conveyor.config import Settings
from conveyor.deadlines import postgres_deadline
from conveyor.errors import StatementTimeout
from conveyor.store.base import database_errors
from conveyor.store.connect import connect_kwargs, describe
from conveyor.store.queries import load_queries
from conveyor.store.session_check import LISTEN_LOOP, SessionCheck

log = logging.getLogger("conveyor.queuer")


# LISTEN takes no parameters: the channel, a quoted identifier, is put in this slot.
CHANNEL_SLOT = b"{channel}"


def leader_lock_id(schema: str) -> int:
    # Stable across processes and Python versions, unlike hash().
    return zlib.crc32(f"conveyor-maintenance:{schema}".encode())


class Listener:
    """Wakes the queuer on NOTIFY; `is_leader` says whether this session holds the lock."""

    # How often a queuer that is not the leader asks for the lock again.
    LOCK_RETRY = 1.0

    def __init__(
        self,
        settings: Settings,
        wake: Callable[[], None],
        *,
        lead: bool,
        role: str = "queuer-listen",
    ) -> None:
        schema = settings.database.schema_name
        self.settings = settings
        self.role = role  # a worker in postgres-only mode listens too, to claim sooner
        self.channel = f"{schema}_jobs"
        self.lock_id = leader_lock_id(schema)
        self.lead = lead
        self.is_leader = False
        self._wake = wake
        self._queries = load_queries(schema)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.deadline = settings.liveness.database_deadline
        self._silence = SessionCheck(settings.liveness.listen_check_interval)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def ensure_open(self) -> None:
        """Open the session unless it is serving already (a lost one is replaced).
        Raises DatabaseUnavailable when PostgreSQL does not answer."""
        if self.alive:
            return
        await self.close()
        db = self.settings.database
        with database_errors():
            # Behind a transaction-mode pooler, only direct_url gives a session of our own.
            conn = await psycopg.AsyncConnection.connect(
                db.direct_url or db.url, **connect_kwargs(self.role, db.connect_timeout)
            )
            try:
                with postgres_deadline(conn, self.deadline, "LISTEN"):
                    channel = sql.Identifier(self.channel).as_bytes(conn)
                    listen = self._queries["listen_for_jobs"].replace(CHANNEL_SLOT, channel)
                    await conn.execute(listen)
                    await self._silence.prepare(conn, self._queries)
                    if self.lead:
                        await self._try_lock(conn)
            except BaseException:
                await conn.close()
                raise
        self._conn = conn
        self._task = asyncio.get_running_loop().create_task(self._serve(conn))

    async def close(self) -> None:
        """End the serving task, then the session (which releases the leader lock)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        conn, self._conn = self._conn, None
        self.is_leader = False
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def _try_lock(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self._queries["try_leader_lock"], {"lock": self.lock_id})
            row = await cur.fetchone()
        self.is_leader = bool(row and row["locked"])
        if self.is_leader:
            log.info("this queuer runs maintenance (rescue, reconcile, prune)")

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            while True:
                async for _ in conn.notifies(timeout=self.LOCK_RETRY):
                    self._wake()
                watchdog.beat(LISTEN_LOOP)
                with postgres_deadline(conn, self.deadline, "the LISTEN session"):
                    await self._silence.check(conn, self._queries)
                    if self.lead and not self.is_leader:
                        await self._try_lock(conn)
        except (psycopg.Error, OSError, StatementTimeout) as error:
            log.warning("lost the LISTEN connection (%s); will reconnect", describe(error))
        finally:
            watchdog.done(LISTEN_LOOP)
            self.is_leader = False
            self._wake()  # the queuer's next pass reconnects
