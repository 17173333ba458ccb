"""The statements of `conveyor bench` (async, beside its event loop's other work) and
`conveyor demo` (sync, between redraws of its progress table)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from conveyor.store.plans import AsyncPlans, Plan, SyncStatements, effect, rows_as


@dataclass(frozen=True)
class BenchSummary:
    """Completed jobs of a benchmark run, timed on PostgreSQL's clock (seconds)."""

    completed: int
    span_seconds: float | None
    last_completed: datetime | None
    start_percentiles: list[float] | None  # p50, p95, p99 of started - created
    start_max: float | None
    complete_percentiles: list[float] | None  # p50, p95, p99 of completed - created
    complete_max: float | None


@dataclass(frozen=True)
class QueueStatusCount:
    queue_name: str
    status: str
    jobs: int


@dataclass(frozen=True)
class LaneSummary:
    """One queue's jobs in one lane at the end of a demo run; waits in seconds."""

    queue_name: str
    lane: str
    jobs: int
    completed: int
    dead: int
    retried: int
    p50: float | None
    p95: float | None
    errors: list[str]  # the distinct last errors of its dead jobs


def _count(name: str, column: str) -> Plan[int]:
    rows = yield name, {}
    counted = rows.column(column)
    return int(counted[0]) if counted else 0


def _bench_summary() -> Plan[BenchSummary]:
    (summary,) = yield from rows_as(BenchSummary, "bench_summary")  # an aggregate: one row
    return summary


def _now() -> Plan[datetime]:
    rows = yield "bench_now", {}
    (now,) = rows.column("now")
    return cast(datetime, now)


class ToolStatements(AsyncPlans):
    async def count_live_workers(self) -> int:
        return await self._run_plan(_count("count_live_workers", "workers"))

    async def count_finished_jobs(self) -> int:
        """Jobs that ended, completed or dead."""
        return await self._run_plan(_count("count_finished_jobs", "jobs"))

    async def ensure_queue(self, queue: str) -> None:
        await self._run_plan(effect("ensure_queue", {"queue": queue}))

    async def bench_now(self) -> datetime:
        """PostgreSQL's clock, where a drain run starts."""
        return await self._run_plan(_now())

    async def bench_summary(self) -> BenchSummary:
        return await self._run_plan(_bench_summary())


class SyncTools(SyncStatements):
    """The demo's reads, on one connection of its own or a small pool."""

    def count_live_workers(self) -> int:
        return self._run_plan(_count("count_live_workers", "workers"))

    def demo_progress(self) -> list[QueueStatusCount]:
        return self._run_plan(rows_as(QueueStatusCount, "demo_progress"))

    def demo_summary(self) -> list[LaneSummary]:
        return self._run_plan(rows_as(LaneSummary, "demo_summary"))
