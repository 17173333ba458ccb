"""The maintenance leader, elected with a lease row when no session of our own is at hand.

Behind a transaction-mode pooler (database.pooler_mode: transaction) without
database.direct_url, every statement may run on another server connection: a session
advisory lock would stay behind on one of them, and LISTEN would hear nothing. Then the
leader is whoever holds the `leader` row (migration 007): one guarded statement takes it
when it is free or expired and renews it when we hold it.

Takeover: a leader that stops cleanly deletes its row, and another queuer takes over at its
next try (within `RENEW` seconds); one that dies or loses PostgreSQL is replaced when its
lease runs out, within `LEASE + RENEW` seconds. A leader counts its lease from before it
asked for it and stops acting `RENEW` seconds early, so its term ends before PostgreSQL's
clock lets another queuer in (the passes are guarded statements, so an overlap would cost
work, not correctness).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from typing import Protocol

from conveyor.errors import DatabaseUnavailable, SchemaNotMigrated, StatementRejected
from conveyor.store.dispatch import DispatchStatements

log = logging.getLogger("conveyor.queuer")

ELECTION = "maintenance"


class Election(Protocol):
    """What the queuer needs of its election: a session (`Listener`) or a lease."""

    @property
    def is_leader(self) -> bool: ...

    async def ensure_open(self) -> None: ...

    async def close(self) -> None: ...


class LeaseElection:
    RENEW = 1.0
    LEASE = 5.0

    def __init__(self, store: DispatchStatements, *, lead: bool) -> None:
        self.store = store
        self.lead = lead
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def ensure_open(self) -> None:
        if self.lead and not self.alive:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    async def close(self) -> None:
        """Stop renewing; give the lease back if we hold it, so another queuer need not
        wait for it to run out. A PostgreSQL that does not answer is not waited for."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not self.is_leader:
            return
        self._valid_until = 0.0
        try:
            async with asyncio.timeout(1.0):
                await self.store.release_leader_lease(ELECTION, self.holder)
        except (TimeoutError, DatabaseUnavailable, StatementRejected, SchemaNotMigrated):
            log.info("could not release the maintenance lease; it runs out by itself")

    async def _serve(self) -> None:
        while True:
            await self.renew()
            await asyncio.sleep(self.RENEW)

    async def renew(self) -> None:
        asked = time.monotonic()
        was_leader = self.is_leader
        try:
            held = await self.store.take_leader_lease(ELECTION, self.holder, self.LEASE)
        except (DatabaseUnavailable, StatementRejected, SchemaNotMigrated) as error:
            # Our term, if any, simply runs out: PostgreSQL's lease does too.
            if was_leader:
                log.warning("could not renew the maintenance lease (%s)", error)
            return
        self._valid_until = asked + self.LEASE - self.RENEW if held else 0.0
        if held and not was_leader:
            log.info("this queuer runs maintenance (rescue, reconcile, prune) under a lease")
        elif was_leader and not held:
            log.warning("another queuer holds the maintenance lease now")
