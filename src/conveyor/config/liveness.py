"""The `liveness` section: how long any process waits on PostgreSQL or Redis, and how
long a loop may go without finishing an iteration before the process restarts itself.

A dependency that fails loudly (refused connection, reset, error reply) is handled by every
loop's back-off. One that goes silent (a frozen server, a dropped NAT entry, a proxy that
stops forwarding) answers nothing at all: only a deadline on our side notices it. Each
value here is such a deadline; docs/operations.md explains what an operator sees when
one fires.
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from conveyor.config.base import _Section
from conveyor.durations import Interval, NonNegDuration, NonNegInt, format_duration


class LivenessSettings(_Section):
    # Longest one PostgreSQL statement or transaction may hold its connection, checkout
    # included; past it the connection's socket is shut down (never reused) and the caller
    # gets StatementTimeout, which every loop handles as an outage.
    database_deadline: Interval = 30.0
    # The LISTEN session runs a trivial statement when it has been quiet this long, so a
    # silent socket is noticed (a wait for notifications alone cannot tell silence from calm).
    listen_check_interval: Interval = 5.0
    # Redis: a command whose connection broke is retried this many times at once on a new
    # connection; a timeout is never retried (a silent Redis costs one socket_timeout).
    redis_retries: NonNegInt = 1
    # Redis connections idle this long are PINGed before reuse.
    redis_health_check_interval: Interval = 10.0
    # A loop (dispatch, maintenance, fetch, heartbeat, outcome writer, the event loop
    # itself) that has not finished an iteration for this long is stuck: /healthz turns
    # 503 naming it, the process logs every thread's and task's stack, then exits.
    watchdog_bound: Interval = 60.0
    # Time between the stacks being logged and the exit, so probes see the 503 and the log
    # reaches its collector. 0 exits at once.
    watchdog_grace: NonNegDuration = 5.0
    watchdog: bool = True

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.watchdog_bound <= self.database_deadline:
            # Otherwise a loop waiting out one legitimate deadline would be declared stuck.
            raise ValueError(
                f"liveness.watchdog_bound ({format_duration(self.watchdog_bound)}) must be "
                f"longer than liveness.database_deadline "
                f"({format_duration(self.database_deadline)})"
            )
        return self
