"""Periodic jobs for the dashboard, the API and the CLI: list schedules, pause, resume and
trigger one by hand.

A schedule belongs to no tenant: a tenant-scoped caller sees none and may change none; a
queue-scoped caller sees and acts on the schedules whose jobs go to its queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from conveyor.admin.base import AdminBase, check_actor
from conveyor.admin.errors import AdminError, AdminNotFound
from conveyor.admin.models import Model
from conveyor.encryption import PayloadCipher
from conveyor.ids import uuid7
from conveyor.scheduler import job_record
from conveyor.schedules import SCHEDULE_NAME
from conveyor.store import Store
from conveyor.store.schedules import ScheduleRow


@dataclass(frozen=True, kw_only=True)
class ScheduleInfo(Model):
    name: str
    task: str
    cron: str
    timezone: str
    queue: str
    priority: int
    payload: Any
    misfire: str  # skip, run_once, backfill
    backfill_limit: int
    source: str  # code or config
    paused: bool
    next_run_at: datetime | None  # None until a queuer first reckons it (or after a resume)
    last_run_at: datetime | None  # the last tick a job was made for
    last_job_id: UUID | None  # that job, or the last one triggered by hand

    @classmethod
    def from_row(cls, row: ScheduleRow) -> ScheduleInfo:
        return cls(
            name=row.name,
            task=row.task,
            cron=row.cron,
            timezone=row.timezone,
            queue=row.queue_name,
            priority=row.priority,
            payload=row.payload,
            misfire=row.misfire,
            backfill_limit=row.backfill_limit,
            source=row.source,
            paused=row.paused,
            next_run_at=row.next_run_at,
            last_run_at=row.last_run_at,
            last_job_id=row.last_job_id,
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleActionResult(Model):
    action: str  # pause, resume, trigger
    schedule: str
    changed: bool  # False when it already was in that state
    job_id: UUID | None  # the job a trigger created
    message: str


def check_schedule(value: object) -> str:
    if not isinstance(value, str) or not SCHEDULE_NAME.match(value):
        raise AdminError("schedule must be a schedule name (1-200 characters, no spaces or '/')")
    return value


class SchedulesMixin(AdminBase):
    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule the caller may see, by name."""
        if self.scope.tenants is not None:
            return []
        rows = await self.read(self.store.list_schedules(self.scope.params["queues"]))
        return [ScheduleInfo.from_row(row) for row in rows]

    async def pause_schedule(self, schedule: str, actor: str) -> ScheduleActionResult:
        """Stop making jobs for a schedule (jobs already made are not touched)."""
        return await self._set_paused(schedule, actor, paused=True)

    async def resume_schedule(self, schedule: str, actor: str) -> ScheduleActionResult:
        """Make jobs again from the next tick on: ticks that fell while paused are not run."""
        return await self._set_paused(schedule, actor, paused=False)

    async def trigger_schedule(self, schedule: str, actor: str) -> ScheduleActionResult:
        """Enqueue one job of the schedule now, as a tick would (paused or not); the
        schedule's own ticks go on unchanged."""
        name, actor = check_schedule(schedule), check_actor(actor)
        self.refuse_tenant_scoped("triggering a schedule")
        cipher = PayloadCipher(self.settings.encryption.keys, self.settings.encryption.fields)
        async with self.transaction() as tx:
            row = await self._require_schedule(tx, name)
            job_id = uuid7()
            record = job_record(row, job_id, cipher, None, None)
            await tx.insert_jobs(orjson.dumps([record]).decode(), [job_id], [None])
            await tx.record_schedule_trigger(name, job_id)
            await tx.record_audit(
                actor, "trigger_schedule", f"schedule:{name}", {"job_id": str(job_id)}, "ok",
                tenants=None, queues=[row.queue_name],
            )  # fmt: skip
        return ScheduleActionResult(
            action="trigger",
            schedule=name,
            changed=True,
            job_id=job_id,
            message=f"schedule {name!r}: job {job_id} enqueued on queue {row.queue_name!r}",
        )

    async def _set_paused(self, schedule: str, actor: str, *, paused: bool) -> ScheduleActionResult:
        name, actor = check_schedule(schedule), check_actor(actor)
        action = "pause" if paused else "resume"
        self.refuse_tenant_scoped(f"{'pausing' if paused else 'resuming'} a schedule")
        async with self.transaction() as tx:
            row = await self._require_schedule(tx, name)
            changed = await tx.set_schedule_paused(name, paused)
            await tx.record_audit(
                actor, f"{action}_schedule", f"schedule:{name}", {}, "ok" if changed else "noop",
                tenants=None, queues=[row.queue_name],
            )  # fmt: skip
        if changed:
            state = "paused" if paused else "resumed from its next tick"
        else:
            state = "was already paused" if paused else "was not paused"
        return ScheduleActionResult(
            action=action,
            schedule=name,
            changed=changed,
            job_id=None,
            message=f"schedule {name!r} {state}",
        )

    async def _require_schedule(self, tx: Store, name: str) -> ScheduleRow:
        row = await tx.lock_schedule(name)
        if row is None or not self.scope.allows_queue(row.queue_name):
            raise AdminNotFound(f"unknown schedule {name!r}")
        return row
