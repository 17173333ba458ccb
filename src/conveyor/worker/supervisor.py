"""Runs P worker processes, restarts the ones that die, and rescues their jobs at once.

A child that dies (SIGKILL, a handler that kills its own process, OOM) leaves running
jobs behind; the supervisor knows its worker id, so it gives those attempts back right
away instead of waiting for the lease to run out. Children that die young are restarted
with a growing delay, so a poison pill cannot make a crash loop.

With worker.autoscale, the autoscaler (worker/autoscaler.py) changes the wanted count; the
supervisor starts processes, or drains one with SIGTERM and never restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from types import FrameType

from conveyor import metrics, watchdog
from conveyor.config import Settings
from conveyor.errors import DatabaseUnavailable, StatementRejected
from conveyor.maintenance import rescue
from conveyor.probes import serve_health_in_thread
from conveyor.store import Store
from conveyor.worker.autoscaler import Autoscaler
from conveyor.worker.process import child_main
from conveyor.worker.runner import WorkerOptions, new_worker_id

log = logging.getLogger("conveyor.supervisor")
MIN_HEALTHY_UPTIME = 10.0
MAX_RESTART_DELAY = 30.0
CRASH_STAGGER_SECONDS = 1.0


@dataclass
class Child:
    slot: int
    process: BaseProcess
    worker_id: str
    started: float
    restart_delay: float = 0.0


class Supervisor:
    def __init__(
        self,
        app_path: str,
        settings: Settings,
        options: WorkerOptions,
        processes: int,
        health_port: int | None = None,
    ) -> None:
        self.app_path = app_path
        self.settings = settings
        self.options = options
        self.processes = processes
        self.health_port = health_port
        self.children: dict[int, Child] = {}
        # Children stopped on purpose (a scale-down): draining, never restarted.
        self.retiring: dict[int, Child] = {}
        self.autoscaler: Autoscaler | None = None
        bounds = settings.worker.autoscale
        if bounds is not None:
            self.processes = bounds.minimum
            self.autoscaler = Autoscaler(
                settings, options.queues, bounds, self._wanted, self._resize
            )
        self.restarts = 0
        self._signals = 0
        self._context = multiprocessing.get_context("spawn")

    def _spawn(self, slot: int, restart_delay: float = 0.0) -> Child:
        worker_id = new_worker_id() + f"-{slot}"
        options = replace(self.options, worker_id=worker_id)
        # Children report through the shared metrics directory; only we serve HTTP.
        process = self._context.Process(
            target=child_main,
            args=(self.app_path, self.settings, options, None),
            name=f"conveyor-worker-{slot}",
            daemon=False,
        )
        process.start()
        log.info("started worker process %d (pid %s, id %s)", slot, process.pid, worker_id)
        return Child(slot, process, worker_id, time.monotonic(), restart_delay)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        for child in self.children.values():
            if child.process.is_alive() and child.process.pid:
                # A second signal is forwarded too: the child then hands back at once.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGTERM)
        if self._signals > 1:
            # Retiring children are draining already: only a second signal hurries them.
            for child in self.retiring.values():
                if child.process.is_alive() and child.process.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.process.pid, signal.SIGTERM)

    def _wanted(self) -> int:
        return self.processes

    def _resize(self, processes: int) -> None:
        # Called from the autoscaler's thread; the supervisor's loop does the work.
        self.processes = processes

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        watchdog.start(self.settings, "worker supervisor")
        with tempfile.TemporaryDirectory(prefix="conveyor-metrics-") as metrics_dir:
            os.environ.setdefault(metrics.MULTIPROC_ENV, metrics_dir)
            health = None
            if self.health_port:
                health = serve_health_in_thread(
                    self.settings, self.health_port, self.readiness, works_without_redis=True
                )
            try:
                return self._supervise()
            finally:
                if health is not None:
                    health.stop_thread()

    def readiness(self) -> str | None:
        alive = sum(1 for child in self.children.values() if child.process.is_alive())
        if self._signals:
            return "shutting down"
        if alive < self.processes:
            return f"{alive} of {self.processes} worker processes running"
        return None

    def _supervise(self) -> int:
        for slot in range(self.processes):
            self.children[slot] = self._spawn(slot)
        pending: dict[int, tuple[float, float]] = {}  # slot -> (restart at, delay used)
        if self.autoscaler is not None:
            self.autoscaler.start()
        while not self._signals:
            watchdog.beat("supervisor")
            self._match_count(pending)
            self._reap_retired()
            for slot, child in list(self.children.items()):
                if child.process.exitcode is None:
                    continue
                del self.children[slot]
                pending[slot] = self._after_death(child)
            now = time.monotonic()
            for slot, (when, delay) in list(pending.items()):
                if now >= when and not self._signals:
                    self.children[slot] = self._spawn(slot, delay)
                    self.restarts += 1
                    del pending[slot]
            time.sleep(0.1)
        watchdog.done("supervisor")  # shutting down: joining children may take a while
        if self.autoscaler is not None:
            self.autoscaler.stop()
        return self._shutdown()

    def _match_count(self, pending: dict[int, tuple[float, float]]) -> None:
        """Start or drain processes until the count is the one wanted (autoscaling)."""
        wanted = self.processes
        metrics.SUPERVISOR.processes = wanted
        while len(self.children) + len(pending) < wanted:
            used = set(self.children) | set(pending) | set(self.retiring)
            slot = next(n for n in range(len(used) + 1) if n not in used)
            self.children[slot] = self._spawn(slot)
        while len(self.children) + len(pending) > wanted:
            if pending:
                del pending[max(pending)]  # a restart not yet due: simply not made
                continue
            slot = max(self.children)
            child = self.children.pop(slot)
            self.retiring[slot] = child
            log.info(
                "draining worker process %d (pid %s) for a scale-down: in-flight jobs finish "
                "or are handed back",
                slot,
                child.process.pid,
            )
            if child.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGTERM)

    def _reap_retired(self) -> None:
        for slot, child in list(self.retiring.items()):
            if child.process.exitcode is None:
                continue
            del self.retiring[slot]
            if child.process.pid:
                metrics.mark_process_dead(child.process.pid)
            log.info("worker process %d (pid %s) stopped after draining", slot, child.process.pid)
            # A drained child hands back what it could not finish; this is for the rest.
            self.rescue(child.worker_id)

    def _after_death(self, child: Child) -> tuple[float, float]:
        uptime = time.monotonic() - child.started
        if child.process.pid:
            metrics.mark_process_dead(child.process.pid)
        log.warning(
            "worker process %d (pid %s) exited with %s after %.1f s",
            child.slot,
            child.process.pid,
            child.process.exitcode,
            uptime,
        )
        self.rescue(child.worker_id)
        if uptime >= MIN_HEALTHY_UPTIME:
            delay = 0.0
        else:
            delay = min(MAX_RESTART_DELAY, max(0.5, child.restart_delay * 2))
        if delay:
            log.warning("restarting worker process %d in %.1f s", child.slot, delay)
        return time.monotonic() + delay, delay

    def rescue(self, worker_id: str) -> int:
        """Give back the running attempts of a dead child (guarded like any rescue)."""
        try:
            return asyncio.run(self._rescue(worker_id))
        except (DatabaseUnavailable, StatementRejected) as error:
            log.warning("could not rescue jobs of %s now (%s); the rescuer will", worker_id, error)
            return 0

    async def _rescue(self, worker_id: str) -> int:
        opened = await Store.open(self.settings, "supervisor", 1)
        try:
            # One connection for the three statements: this pool lives for one rescue.
            async with opened.connection() as conn:
                store = opened.bound_to(conn)
                candidates = await store.find_worker_jobs(worker_id)
                # Which of the jobs killed the process is unknown, so each attempt counts. If
                # they all ran again at once they would share a process again, and a poison
                # pill would take the same bystanders down on every attempt: space them out.
                random.shuffle(candidates)
                stagger = CRASH_STAGGER_SECONDS if len(candidates) > 1 else 0.0
                result = await rescue(store, candidates, stagger=stagger)
                await store.deregister_worker(worker_id)
        finally:
            await opened.close()
        if result.total:
            log.warning(
                "rescued %d job(s) of dead worker %s (%d now dead)",
                result.total,
                worker_id,
                len(result.dead),
            )
        return result.total

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.settings.worker.shutdown_grace + 10
        self.children.update({-1 - slot: child for slot, child in self.retiring.items()})
        self.retiring.clear()
        for child in self.children.values():
            remaining = max(0.0, deadline - time.monotonic())
            child.process.join(remaining)
        for child in self.children.values():
            if child.process.exitcode is None:
                log.warning("worker process %d did not stop in time; killing it", child.slot)
                child.process.kill()
                child.process.join(5)
                self.rescue(child.worker_id)
        return 0
