"""The supervisor's autoscaler: measure, decide (conveyor.autoscale.decision), resize.

It runs in a thread of the supervisor with its own event loop and one PostgreSQL
connection. Every `autoscale.check_interval` it reads the served queues' depth and oldest
wait (the `queue_depths` statement the metrics pass uses), samples the host's CPU and
memory, and asks the pure decision function what to do. A change is handed to the
supervisor as a new process count (the supervisor's loop starts or drains processes),
logged with its reason, counted in `autoscale_decisions_total` and written to the audit
log (actor "autoscaler"), where the workers page shows it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import psutil

from conveyor import metrics, watchdog
from conveyor.autoscale import AUDIT_ACTION, AUDIT_ACTOR
from conveyor.autoscale.decision import HOLD, UP, Decision, Observation, QueueLoad, decide, is_calm
from conveyor.config import Settings
from conveyor.config.autoscale import ProcessRange
from conveyor.errors import DatabaseUnavailable, StatementRejected
from conveyor.store import Store
from conveyor.store.upkeep import QueueDepth

log = logging.getLogger("conveyor.autoscaler")
LOOP_NAME = "autoscaler"


def queue_loads(
    rows: Sequence[QueueDepth], queues: Sequence[str], settings: Settings
) -> list[QueueLoad]:
    """One load per served queue: its lanes' waiting jobs summed, and the lane furthest
    past its own latency target (a queue without waiting jobs is idle)."""
    loads = []
    for queue in queues:
        lanes = [row for row in rows if row.queue_name == queue and row.waiting > 0]
        waiting = sum(row.waiting for row in lanes)
        worst = (0.0, settings.queue_target(queue))
        for row in lanes:
            age, target = row.oldest_age or 0.0, settings.queue_target(queue, row.lane)
            if age / target > worst[0] / worst[1]:
                worst = (age, target)
        loads.append(QueueLoad(queue, waiting, worst[0], worst[1]))
    return loads


class HostSampler:
    """Host CPU and memory in use (0..1), averaged over a sliding window so that one spike
    does not scale anything."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.samples: deque[tuple[float, float, float]] = deque()
        psutil.cpu_percent(interval=None)  # the first reading only starts the measurement

    def sample(self) -> tuple[float, float]:
        now = time.monotonic()
        cpu = psutil.cpu_percent(interval=None) / 100
        memory = psutil.virtual_memory().percent / 100
        self.samples.append((now, cpu, memory))
        while self.samples and self.samples[0][0] < now - self.window:
            self.samples.popleft()
        count = len(self.samples)
        return (
            sum(s[1] for s in self.samples) / count,
            sum(s[2] for s in self.samples) / count,
        )


class Autoscaler:
    def __init__(
        self,
        settings: Settings,
        queues: Sequence[str],
        bounds: ProcessRange,
        current: Callable[[], int],
        resize: Callable[[int], None],
    ) -> None:
        self.settings = settings
        self.rules = settings.autoscale
        self.queues = list(queues)
        self.bounds = bounds
        self.current = current
        self.resize = resize
        self.host = HostSampler(self.rules.cpu_window)
        self.last_up: float | None = None
        self.last_down: float | None = None
        self.calm_since: float | None = None
        self.last_decision: Decision | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- one check ----------------------------------------------------------------------

    def observe(self, rows: Sequence[QueueDepth], now: float) -> Observation:
        loads = queue_loads(rows, self.queues, self.settings)
        cpu, memory = self.host.sample()
        if is_calm(loads, cpu, memory, self.rules):
            self.calm_since = now if self.calm_since is None else self.calm_since
        else:
            self.calm_since = None
        return Observation(
            processes=self.current(),
            queues=loads,
            cpu=cpu,
            memory=memory,
            since_up=None if self.last_up is None else now - self.last_up,
            since_down=None if self.last_down is None else now - self.last_down,
            calm_for=None if self.calm_since is None else now - self.calm_since,
        )

    async def check(self, store: Store) -> Decision | None:
        try:
            rows = await store.queue_depths()
        except (DatabaseUnavailable, StatementRejected) as error:
            log.warning("autoscaler: cannot read queue depths (%s); keeping the count", error)
            return None
        now = time.monotonic()
        observation = self.observe(rows, now)
        decision = decide(observation, self.bounds, self.rules)
        self.last_decision = decision
        if decision.direction == HOLD:
            log.debug("autoscaler: holding at %d (%s)", decision.target, decision.detail)
            return decision
        if decision.direction == UP:
            self.last_up = now
        else:
            self.last_down = now
        self.calm_since = None
        self.resize(decision.target)
        metrics.SUPERVISOR.count_decision(decision.direction, decision.reason)
        log.info(
            "autoscaler: scaling %s from %d to %d worker processes: %s",
            decision.direction,
            observation.processes,
            decision.target,
            decision.detail,
        )
        await self._audit(store, observation.processes, decision)
        return decision

    async def _audit(self, store: Store, before: int, decision: Decision) -> None:
        detail = {
            "from": before,
            "to": decision.target,
            "reason": decision.reason,
            "detail": decision.detail,
            "queues": self.queues,
        }
        try:
            await store.record_audit(
                AUDIT_ACTOR,
                AUDIT_ACTION,
                f"{before}->{decision.target}",
                detail,
                decision.direction,
                tenants=None,
                queues=None,
            )
        except (DatabaseUnavailable, StatementRejected) as error:
            log.warning("autoscaler: decision not written to the audit log (%s)", error)

    # -- the thread ---------------------------------------------------------------------

    async def run(self) -> None:
        store = await Store.open(self.settings, "autoscaler", 1)
        try:
            while not self._stopping.is_set():
                watchdog.beat(LOOP_NAME)
                await self.check(store)
                with watchdog.waiting(LOOP_NAME):
                    await self._pause(self.rules.check_interval)
        finally:
            watchdog.done(LOOP_NAME)
            await store.close()

    async def _pause(self, seconds: float) -> None:
        # stop() comes from the supervisor's thread: wait on its event, in a thread.
        await asyncio.to_thread(self._stopping.wait, seconds)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.run()), name="conveyor-autoscaler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.settings.liveness.database_deadline + 5)
