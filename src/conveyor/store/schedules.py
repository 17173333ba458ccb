"""The schedules' statements: definitions written by code or configuration, the
scheduler's guarded advance with its jobs, and the admin's reads and actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import orjson

from conveyor.schedules import ScheduleFields, ScheduleSpec
from conveyor.store.plans import AsyncPlans, Plan, SyncStatements
from conveyor.store.producer import insert_jobs


@dataclass(frozen=True)
class DueSchedule(ScheduleFields):
    next_run_at: datetime | None
    now: datetime


@dataclass(frozen=True)
class ScheduleRow(ScheduleFields):
    source: str
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: UUID | None


@dataclass(frozen=True)
class Advance:
    """Where the scheduler moves one schedule, guarded by the tick it read."""

    name: str
    expected: datetime | None
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: UUID | None


def _specs_json(specs: Sequence[ScheduleSpec]) -> str:
    return orjson.dumps([spec.as_record() for spec in specs]).decode()


def upsert_schedules(specs: Sequence[ScheduleSpec]) -> Plan[int]:
    rows = yield "upsert_schedules", {"schedules": _specs_json(specs)}
    return len(rows)


def fire_schedule(
    advance: Advance, jobs: str, ids: Sequence[UUID], keys: Sequence[str | None]
) -> Plan[list[UUID] | None]:
    """Advance the schedule, then insert its ticks' jobs; None when another queuer moved
    it first (then nothing is inserted). Run atomically."""
    params = {
        "name": advance.name,
        "expected": advance.expected,
        "next_run_at": advance.next_run_at,
        "last_run_at": advance.last_run_at,
        "last_job_id": advance.last_job_id,
    }
    moved = yield "advance_schedule", params
    if not moved:
        return None
    if not ids:
        return []
    return (yield from insert_jobs(jobs, ids, keys))


class ScheduleStatements(AsyncPlans):
    async def upsert_schedules(self, specs: Sequence[ScheduleSpec]) -> int:
        """Write these definitions; return how many rows were new or changed."""
        return await self._run_plan(upsert_schedules(specs))

    async def delete_unconfigured_schedules(self, source: str, names: Sequence[str]) -> int:
        params = {"source": source, "names": list(names)}
        return await self._execute("delete_unconfigured_schedules", params)

    async def due_schedules(self, limit: int) -> list[DueSchedule]:
        return await self._rows("due_schedules", {"limit": limit}, DueSchedule)

    async def fire_schedule(
        self, advance: Advance, jobs: str, ids: Sequence[UUID], keys: Sequence[str | None]
    ) -> list[UUID] | None:
        return await self._run_plan(fire_schedule(advance, jobs, ids, keys), atomic=True)

    async def list_schedules(self, queues: Sequence[str] | None) -> list[ScheduleRow]:
        params = {"queues": None if queues is None else list(queues)}
        return await self._rows("list_schedules", params, ScheduleRow)

    async def lock_schedule(self, name: str) -> ScheduleRow | None:
        return await self._row("lock_schedule", {"name": name}, ScheduleRow)

    async def set_schedule_paused(self, name: str, paused: bool) -> bool:
        """True when the state changed."""
        return await self._execute("set_schedule_paused", {"name": name, "paused": paused}) == 1

    async def record_schedule_trigger(self, name: str, job_id: UUID) -> None:
        await self._execute("record_schedule_trigger", {"name": name, "job_id": job_id})


class SyncSchedules(SyncStatements):
    """`upsert_schedules` for the app's sync code (`Conveyor.sync_schedules`)."""

    def upsert_schedules(self, specs: Sequence[ScheduleSpec]) -> int:
        return self._run_plan(upsert_schedules(specs))
