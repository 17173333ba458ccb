"""Heartbeats that cannot lie: which leases a worker may still claim to hold.

A lease is proven by the claim that granted it and by each heartbeat that renewed it. A
heartbeat that succeeded when it started at T leaves every lease it covered running until
at least T + lease/2 (the statement renews leases past their half-life), and a claim seen
at C until C + lease/2 at least. Past that, with no heartbeat succeeding in between (a
wedged connection, a silent PostgreSQL), the lease may have run out and another worker may
be running the job: this worker then treats the attempt as lost. It asks the handler to
stop (an async handler is cancelled, a sync one sees ctx.cancelled), leaves the job out of
every later heartbeat, so that renewing leases on stale knowledge is impossible, and drops
whatever the attempt reports: the rescuer takes over once the lease ends, as the design
intends, and the attempt counts ("worker lost"). Recording it instead would be wrong both
ways: as cancelled (what ctx.cancelled means to the outcome) it would end the job, and as
handed back it would not count an attempt that may well have run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar
from uuid import UUID

from conveyor.log_context import job_fields

log = logging.getLogger("conveyor.worker")


class _Job(Protocol):
    @property
    def id(self) -> UUID: ...


class _Flight(Protocol):
    @property
    def job(self) -> _Job: ...


F = TypeVar("F", bound=_Flight)


class LeaseTrust:
    def __init__(self, lease: float) -> None:
        self.window = lease / 2
        self._proven = time.monotonic()
        self._seen: dict[UUID, float] = {}
        self.disowned: set[UUID] = set()
        self.lost = 0

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def proven(self, started: float) -> None:
        """A heartbeat that started at `started` succeeded."""
        self._proven = max(self._proven, started)

    def trusted(self, flights: Iterable[F], disown: Callable[[F], None]) -> list[F]:
        """The flights whose lease is still proven; the others are disowned (once)."""
        now = time.monotonic()
        keep: list[F] = []
        current: set[UUID] = set()
        for flight in flights:
            job_id = flight.job.id
            current.add(job_id)
            if job_id in self.disowned:
                continue
            since = max(self._proven, self._seen.setdefault(job_id, now))
            if now - since <= self.window:
                keep.append(flight)
                continue
            self.disowned.add(job_id)
            self.lost += 1
            log.warning(
                "job %s: no heartbeat succeeded for %.0f s, so its lease may have run out; "
                "treating the attempt as lost (the rescuer will run it again)",
                job_id,
                now - since,
                extra=job_fields(job_id),
            )
            disown(flight)
        # Forget jobs that finished.
        for job_id in [job_id for job_id in self._seen if job_id not in current]:
            del self._seen[job_id]
        self.disowned &= current
        return keep

    def forget(self, job_id: UUID) -> bool:
        """The attempt ended; True if it had been disowned (drop its outcome)."""
        self._seen.pop(job_id, None)
        if job_id in self.disowned:
            self.disowned.discard(job_id)
            return True
        return False

    async def watch(
        self, flights: Callable[[], Iterable[F]], disown: Callable[[F], None], interval: float
    ) -> None:
        """Check every `interval` seconds, apart from the heartbeat itself: a heartbeat
        stuck on a silent connection until its deadline must not delay the verdict."""
        while True:
            await asyncio.sleep(interval)
            self.trusted(flights(), disown)
