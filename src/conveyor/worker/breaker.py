"""A circuit breaker per queue, per worker process.

After `failure_threshold` consecutive failed attempts in a queue, the worker stops taking
that queue's jobs for `cooldown_period` (open): a dependency that is down is not hammered,
and the jobs wait in PostgreSQL instead of burning attempts. Then the queue is served
again (half-open) and the next outcome decides: a success closes the breaker, a failure
opens it for another cooldown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from conveyor import metrics

log = logging.getLogger("conveyor.worker")
CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half-open", OPEN: "open"}


@dataclass
class _Circuit:
    failures: int = 0
    state: int = CLOSED
    reopen_at: float = 0.0


class Breakers:
    def __init__(
        self,
        enabled: bool,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.threshold = max(1, failure_threshold)
        self.cooldown = cooldown
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def blocked(self, queue: str) -> bool:
        """True while the queue's breaker is open (its jobs are not to be taken)."""
        circuit = self._circuits.get(queue)
        if not self.enabled or circuit is None or circuit.state != OPEN:
            return False
        if self.clock() < circuit.reopen_at:
            return True
        self._set(queue, circuit, HALF_OPEN)
        return False

    def record(self, queue: str, failed: bool) -> None:
        if not self.enabled:
            return
        circuit = self._circuits.setdefault(queue, _Circuit())
        if not failed:
            circuit.failures = 0
            if circuit.state != CLOSED:
                self._set(queue, circuit, CLOSED)
            return
        circuit.failures += 1
        if circuit.state == HALF_OPEN or circuit.failures >= self.threshold:
            circuit.reopen_at = self.clock() + self.cooldown
            if circuit.state != OPEN:
                self._set(queue, circuit, OPEN)

    def open_queues(self) -> list[str]:
        """The queues whose breaker is open now (their jobs are not being taken)."""
        now = self.clock()
        return sorted(
            queue
            for queue, circuit in self._circuits.items()
            if self.enabled and circuit.state == OPEN and now < circuit.reopen_at
        )

    def state(self, queue: str) -> str:
        circuit = self._circuits.get(queue)
        return STATE_NAMES[circuit.state if circuit else CLOSED]

    def _set(self, queue: str, circuit: _Circuit, state: int) -> None:
        circuit.state = state
        metrics.BREAKER_STATE.labels(queue).set(state)
        if state == OPEN:
            log.warning(
                "circuit breaker for queue %s opened after %d failure(s): pausing it "
                "in this worker for %.0f s",
                queue,
                circuit.failures,
                self.cooldown,
            )
        else:
            log.info("circuit breaker for queue %s is %s", queue, STATE_NAMES[state])
