"""Postgres-only mode: no Redis answers, and work goes on from PostgreSQL alone.

PostgreSQL holds every job, so Redis is an accelerator, not a dependency: a worker that
cannot reach any Redis claims jobs straight from PostgreSQL (slower: one indexed search
per claim instead of a pop), and a queuer, which cannot dispatch, waits for Redis to come
back. Each process says so in its log (a warning on every switch), in /readyz, and in
two metrics, `postgres_only_mode` and `postgres_only_seconds_total`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from conveyor import metrics

log = logging.getLogger("conveyor.mode")

Mode = Literal["normal", "postgres-only"]
NORMAL: Mode = "normal"
POSTGRES_ONLY: Mode = "postgres-only"


def redis_unreachable(error: BaseException) -> str:
    """The mode's reason, in the driver's words (RedisUnavailable wraps them)."""
    return f"Redis unreachable: {error.__cause__ or error}"


class PostgresOnlyMode:
    """Whether this process is in postgres-only mode, why, and for how long (counted into
    `postgres_only_seconds_total` at each `tick()` and when the mode ends)."""

    def __init__(
        self, who: str, consequence: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.who = who
        self.consequence = consequence
        self.clock = clock
        self.reason = ""
        self._since: float | None = None
        self._counted = 0.0

    @property
    def active(self) -> bool:
        return self._since is not None

    @property
    def mode(self) -> Mode:
        return POSTGRES_ONLY if self.active else NORMAL

    def enter(self, reason: str) -> bool:
        """Enter the mode (or stay, with the latest reason); True if this call entered."""
        self.reason = reason
        if self._since is not None:
            self.tick()
            return False
        self._since = self._counted = self.clock()
        metrics.POSTGRES_ONLY.set(1)
        log.warning("%s: postgres-only mode (%s): %s", self.who, reason, self.consequence)
        return True

    def tick(self) -> None:
        """Count the time spent in the mode since the last count."""
        if self._since is None:
            return
        now = self.clock()
        metrics.POSTGRES_ONLY_SECONDS.inc(max(0.0, now - self._counted))
        self._counted = now

    def leave(self, how: str) -> bool:
        """Leave the mode; True if this call left it."""
        if self._since is None:
            return False
        self.tick()
        spent = self._counted - self._since
        self._since, self.reason = None, ""
        metrics.POSTGRES_ONLY.set(0)
        log.warning("%s: leaving postgres-only mode after %.1f s: %s", self.who, spent, how)
        return True
