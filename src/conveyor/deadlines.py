"""Client-side deadlines on every network wait, for dependencies that go silent.

A silent peer (a frozen server, a dropped NAT entry, a proxy that holds the bytes) closes
nothing and answers nothing: a statement on its connection waits forever, and so does the
ROLLBACK psycopg sends when that wait is cancelled. So a PostgreSQL deadline here does not
cancel the waiting task; it shuts the connection's socket down (the event loop keeps
watching the same descriptor, which stays open until psycopg closes it). Every wait on
that socket then fails at once, the connection is BAD, and the pool discards it instead
of handing it out again. The caller gets StatementTimeout, a DatabaseUnavailable, which
every loop already handles as an outage.

Redis needs less: redis-py bounds each read and write with `socket_timeout` and drops a
connection that timed out; lanes adds keepalives, a health check and a bounded number of
retries (liveness.redis_retries), so one command costs at most (retries + 1) socket
timeouts, and keeps a blocking pop's wait under the socket timeout (`longest_block`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from conveyor.config import Settings
from conveyor.errors import StatementTimeout

# The default of liveness.database_deadline, for stores built without settings.
DEFAULT_DEADLINE = 30.0


class _HasSocket(Protocol):
    def fileno(self) -> int: ...


def cut(connection: _HasSocket) -> None:
    """Shut the connection's socket down in both directions; pending and later reads see
    end-of-file and writes fail, so nothing waits on it any longer. The descriptor is not
    closed: its owner still holds it, and the event loop may still be watching it."""
    try:
        fd = connection.fileno()
    except Exception:  # noqa: BLE001 - a connection already closed has nothing to cut
        return
    with contextlib.suppress(OSError):
        # A duplicate descriptor, closed here: shutdown acts on the shared socket.
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class Deadline:
    """Cuts `connection` if the block it guards runs past `seconds`; `expired` says whether
    it did (the error that follows is then ours, not the server's)."""

    def __init__(self, connection: _HasSocket, seconds: float) -> None:
        self.connection = connection
        self.seconds = seconds
        self.expired = False
        self._timer: asyncio.TimerHandle | None = None

    def _fire(self) -> None:
        self.expired = True
        cut(self.connection)

    def renew(self) -> None:
        """Start the clock again: another statement begins on the same checkout."""
        if self._timer is not None and not self.expired:
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(self.seconds, self._fire)

    def __enter__(self) -> Deadline:
        self._timer = asyncio.get_running_loop().call_later(self.seconds, self._fire)
        _ACTIVE[id(self.connection)] = self
        return self

    def __exit__(self, *_: object) -> None:
        if _ACTIVE.get(id(self.connection)) is self:
            del _ACTIVE[id(self.connection)]
        if self._timer is not None:
            self._timer.cancel()


# The deadline guarding each checked-out connection, by id(connection).
_ACTIVE: dict[int, Deadline] = {}


def renew(connection: object) -> None:
    """A statement starts on a connection held for several (a prune's batches, an admin
    transaction): each statement gets the whole deadline, not what the previous ones left."""
    deadline = _ACTIVE.get(id(connection))
    if deadline is not None:
        deadline.renew()


@contextlib.contextmanager
def postgres_deadline(connection: _HasSocket, seconds: float, what: str) -> Iterator[None]:
    """Bound the block to `seconds` (see the module); raise StatementTimeout when cut."""
    with Deadline(connection, seconds) as deadline:
        try:
            yield
        except StatementTimeout:
            raise
        except Exception as error:
            if deadline.expired:
                raise StatementTimeout(
                    f"PostgreSQL did not answer {what} within {seconds:g} s; "
                    "its connection was dropped"
                ) from error
            raise
    # Expired after the block succeeded (the timer ran between its last await and here):
    # the result stands; the cut connection fails the pool's check and is discarded.


def pool_check(seconds: float) -> Callable[[Any], Awaitable[None]]:
    """A psycopg_pool `check` that proves a pooled connection answers within `seconds`:
    the pool's own check waits forever on a silent one, inside the checkout. Keep it
    well under the pool's timeout, which must leave time to open a fresh connection."""

    async def check(conn: Any) -> None:
        with postgres_deadline(conn, seconds, "the pool's connection check"):
            await conn.execute(b"")

    return check


# libpq TCP keepalives (probe after 10 s idle, every 5 s, give up after 3) and
# TCP_USER_TIMEOUT (30 s of unacknowledged data): the kernel then drops a connection whose
# peer vanished, even an idle pooled one that no deadline watches.
TCP_OPTIONS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def redis_options(settings: Settings) -> dict[str, Any]:
    """redis-py client options beyond the timeouts themselves (the retry count is built
    into a Retry by lanes, the only module that imports redis)."""
    live = settings.liveness
    return {"socket_keepalive": True, "health_check_interval": live.redis_health_check_interval}


def longest_block(socket_timeout: float, block: float) -> float:
    """A blocking pop's server-side wait, kept to half the socket timeout: the read that
    waits for its reply is bounded by the socket timeout, which must leave a margin."""
    return max(0.01, min(block, socket_timeout / 2))
