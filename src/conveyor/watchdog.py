"""A watchdog in every long-running process: a loop that stops finishing iterations makes
the process say so, leave its stacks in the log and exit, so that its supervisor (the
worker supervisor, Kubernetes, systemd) starts a fresh one.

Deadlines (conveyor.deadlines) bound every network wait we know of; the watchdog catches
the ones we do not: a wait nobody bounded, a lock never released, an event loop blocked
by a handler. Each loop calls `beat(name)` once per iteration (and `done(name)` when it
ends on purpose); a loop that legitimately waits on something local, such as a free slot,
wraps that wait in `waiting(name)`. The checker is a thread, so it still runs when the
event loop itself is blocked.

Nothing happens in a process that did not `start()` one (tests, applications embedding
Conveyor): `beat` and friends are then no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator

from conveyor.config import Settings

log = logging.getLogger("conveyor.watchdog")

EVENT_LOOP = "event-loop"
# EX_SOFTWARE: an internal error, distinct from a crash (signal) or bad usage (2).
EXIT_CODE = 70


class Watchdog:
    def __init__(self, process: str, bound: float, grace: float) -> None:
        self.process = process
        self.bound = bound
        self.grace = grace
        self.stuck: list[str] = []
        self._beats: dict[str, float] = {}
        self._idle: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what loops call -------------------------------------------------------------------

    def beat(self, name: str) -> None:
        with self._lock:
            self._beats[name] = time.monotonic()
            self._idle.discard(name)

    def done(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)
            self._idle.discard(name)

    def idle(self, name: str) -> None:
        with self._lock:
            self._idle.add(name)

    # -- checking --------------------------------------------------------------------------

    def late(self, now: float | None = None) -> list[tuple[str, float]]:
        """Loops past their bound, with how long since their last iteration."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sorted(
                (name, now - last)
                for name, last in self._beats.items()
                if name not in self._idle and now - last > self.bound
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="conveyor-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch(self) -> None:
        interval = min(1.0, self.bound / 4)
        while not self._stop.wait(interval):
            late = self.late()
            if late:
                self._fire(late)
                return

    def _fire(self, late: list[tuple[str, float]]) -> None:
        self.stuck = [name for name, _ in late]
        described = ", ".join(f"{name} (no iteration for {age:.0f} s)" for name, age in late)
        log.critical(
            "%s is stuck: %s, longer than liveness.watchdog_bound (%g s). Stacks follow; "
            "exiting with status %d in %g s so that it is restarted",
            self.process,
            described,
            self.bound,
            EXIT_CODE,
            self.grace,
        )
        dump_stacks()
        if self._stop.wait(self.grace):
            return  # stopped on purpose meanwhile (tests)
        flush_logs()
        os._exit(EXIT_CODE)


def dump_stacks() -> None:
    """Every thread's Python stack, then every asyncio task's (best effort: the tasks
    belong to a loop that may be running, or blocked, in another thread)."""
    stream = sys.stderr
    flush_logs()
    with contextlib.suppress(Exception):
        stream.write("--- thread stacks ---\n")
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
    loop = _LOOP
    if loop is None:
        return
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:  # the set changed while we read it; one more try
        with contextlib.suppress(RuntimeError):
            tasks = list(asyncio.all_tasks(loop))
    with contextlib.suppress(Exception):
        stream.write(f"--- {len(tasks)} asyncio task(s) ---\n")
        for task in tasks:
            stream.write(f"task {task.get_name()} ({task.get_coro()!r}):\n")
            for frame in task.get_stack(limit=20):
                stream.write("".join(traceback.format_stack(frame, limit=1)))
        stream.flush()


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()


# -- the process's watchdog -------------------------------------------------------------------

_CURRENT: Watchdog | None = None
_LOOP: asyncio.AbstractEventLoop | None = None
_TICK: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference


def start(settings: Settings, process: str) -> Watchdog | None:
    """Enable faulthandler and, unless liveness.watchdog is off, watch this process. Call
    it from the running event loop to have the loop itself watched too."""
    global _CURRENT, _LOOP, _TICK
    # A fatal signal (SIGSEGV, SIGABRT from a native library) then leaves a Python stack.
    with contextlib.suppress(OSError, ValueError):  # a stderr without a descriptor
        faulthandler.enable()
    live = settings.liveness
    if not live.watchdog:
        return None
    if _CURRENT is not None:
        _CURRENT.stop()
    dog = Watchdog(process, live.watchdog_bound, live.watchdog_grace)
    _CURRENT = dog
    with contextlib.suppress(RuntimeError):  # no running loop: a thread-only process
        _LOOP = asyncio.get_running_loop()
        _TICK = _LOOP.create_task(_tick(dog), name="conveyor-watchdog-tick")
    dog.start()
    return dog


def stop() -> None:
    global _CURRENT, _LOOP, _TICK
    if _CURRENT is not None:
        _CURRENT.stop()
    if _TICK is not None:
        _TICK.cancel()
    _CURRENT, _LOOP, _TICK = None, None, None


async def _tick(dog: Watchdog) -> None:
    """Proves the event loop runs: a handler that blocks it stops this too."""
    period = min(1.0, dog.bound / 4)
    try:
        while True:
            dog.beat(EVENT_LOOP)
            await asyncio.sleep(period)
    finally:
        dog.done(EVENT_LOOP)


def beat(name: str) -> None:
    if _CURRENT is not None:
        _CURRENT.beat(name)


def done(name: str) -> None:
    if _CURRENT is not None:
        _CURRENT.done(name)


@contextlib.contextmanager
def waiting(name: str) -> Iterator[None]:
    """The loop waits for something that may take as long as it likes (a free slot, new
    outcomes to write): not counted against its bound. The next beat ends it."""
    if _CURRENT is not None:
        _CURRENT.idle(name)
    try:
        yield
    finally:
        beat(name)


def stuck() -> list[str]:
    """The loops this process's watchdog found stuck (empty while all is well)."""
    return list(_CURRENT.stuck) if _CURRENT is not None else []
