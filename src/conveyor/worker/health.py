"""What a worker process reports about itself in each heartbeat: its resident memory,
the attempts it ran since it started (and how many failed, and how long they took), and
the states an alert needs from the worker side (postgres-only mode, open breakers).

The counters are totals since the process started, kept in memory and only ever growing;
the heartbeat statement writes them as they are (no increments in SQL), so a beat that
fails loses nothing: the next one carries the same totals, and more.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conveyor.store.work import WorkerVitals
from conveyor.worker.outcome import CANCELLED, COMPLETED, DEAD, RETRY, Outcome

STATM = Path("/proc/self/statm")
# Attempts whose handler ran to an end; a hand-back (shutdown) is not one.
_PROCESSED = frozenset((COMPLETED, RETRY, DEAD, CANCELLED))
_FAILED = frozenset((RETRY, DEAD))


def resident_bytes(statm: Path = STATM) -> int | None:
    """This process's resident set size now, from /proc (Linux). Where there is no /proc,
    the peak resident size from getrusage: the best a portable call offers, and still
    the figure that tells a leak from a steady worker. None where neither exists."""
    try:
        resident_pages = int(statm.read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kibibytes on Linux and the BSDs, bytes on macOS.
    return peak if sys.platform == "darwin" else peak * 1024


class WorkerHealth:
    """Totals since the process started, and the vitals a heartbeat carries."""

    def __init__(self) -> None:
        self.processed = 0
        self.failed = 0
        self.busy_seconds = 0.0

    def record(self, outcome: Outcome) -> None:
        """Count one ended attempt (its handler's run time included)."""
        if outcome.log_status not in _PROCESSED:
            return
        self.processed += 1
        if outcome.log_status in _FAILED:
            self.failed += 1
        self.busy_seconds += max(0.0, outcome.duration)

    def vitals(self, postgres_only: bool, breakers_open: list[str]) -> WorkerVitals:
        return WorkerVitals(
            rss_bytes=resident_bytes(),
            jobs_processed=self.processed,
            jobs_failed=self.failed,
            busy_seconds=self.busy_seconds,
            postgres_only=postgres_only,
            breakers_open=sorted(breakers_open),
        )
