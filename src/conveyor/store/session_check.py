"""Keeping a long-lived PostgreSQL session (the queuer's LISTEN connection) honest.

Waiting for notifications cannot tell a silent socket from a calm queue, so the session
runs a trivial statement whenever it has been quiet for liveness.listen_check_interval,
under a deadline. And it asks PostgreSQL to end it when the client side goes quiet for
several of those intervals: a backend whose client vanished behind a silent network would
otherwise hold the maintenance leader lock until TCP gives up, which can take hours.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

from conveyor.store.queries import Queries

LISTEN_LOOP = "queuer.listen"


class SessionCheck:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = time.monotonic()

    @property
    def idle_limit_ms(self) -> int:
        """How long PostgreSQL lets the session sit idle: three missed checks, plus slack
        for a busy client."""
        return int((3 * self.interval + 5) * 1000)

    async def prepare(self, conn: psycopg.AsyncConnection[Any], queries: Queries) -> None:
        # PostgreSQL before 14 has no idle_session_timeout; the keepalives remain.
        with contextlib.suppress(psycopg.errors.UndefinedObject):
            await conn.execute(queries["end_silent_session"], {"ms": str(self.idle_limit_ms)})
        self._last = time.monotonic()

    async def check(self, conn: psycopg.AsyncConnection[Any], queries: Queries) -> None:
        if time.monotonic() - self._last < self.interval:
            return
        await conn.execute(queries["session_alive"])
        self._last = time.monotonic()
