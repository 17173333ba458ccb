"""The scheduler pass: turns due schedule ticks into jobs.

Every queuer runs it (not only the leader), so schedules keep firing through a leader
change. Exactly one job per tick however many run it at once: a queuer reads a due
schedule with its `next_run_at`, reckons the ticks from PostgreSQL's clock, and in one
transaction moves `next_run_at` on with an UPDATE guarded by the value it read and inserts
the ticks' jobs through the client's `insert_jobs`. A racing queuer's UPDATE waits for the
row, then matches nothing, and inserts nothing. Each job also carries the idempotency key
`cron:<schedule>:<tick>` as a second guard.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any
from uuid import UUID

import orjson
from cronsim import CronSimError

from conveyor import metrics
from conveyor.config import Settings
from conveyor.encryption import PayloadCipher
from conveyor.ids import uuid7
from conveyor.schedules import CONFIG, ScheduleSpec, due_ticks, tick_key
from conveyor.store import Store
from conveyor.store.schedules import Advance, DueSchedule

log = logging.getLogger("conveyor.scheduler")


def configured_schedules(settings: Settings) -> list[ScheduleSpec]:
    """The `schedules` section as table rows, task defaults from the `jobs` section."""
    jobs = settings.jobs
    return [
        ScheduleSpec(
            name=name,
            task=entry.task,
            cron=entry.cron,
            timezone=entry.timezone,
            payload=entry.payload,
            queue_name=entry.queue,
            priority=jobs.default_priority if entry.priority is None else entry.priority,
            max_attempts=jobs.max_attempts if entry.max_attempts is None else entry.max_attempts,
            timeout_seconds=jobs.timeout if entry.timeout is None else entry.timeout,
            lease_seconds=None,
            misfire=entry.misfire,
            backfill_limit=entry.backfill_limit,
            source=CONFIG,
        )
        for name, entry in settings.schedules.items()
    ]


def job_record(
    schedule: Any, job_id: UUID, cipher: PayloadCipher, key: str | None, run_at: Any
) -> dict[str, Any]:
    """One row for `insert_jobs`, as the client builds it (see `client.build_batch`).
    `schedule` is a schedule row (`DueSchedule` or `ScheduleRow`)."""
    # A job's payload is never JSON null (jobs.payload is NOT NULL): no payload is {}.
    payload = {} if schedule.payload is None else schedule.payload
    payload = cipher.encrypt(payload, job_id) if cipher.enabled else payload
    return {
        "id": job_id,
        "payload": payload,
        "queue_name": schedule.queue_name,
        "task": schedule.task,
        "priority": schedule.priority,
        "max_attempts": schedule.max_attempts,
        "run_at": run_at,
        "delay_seconds": None,
        "idempotency_key": key,
        "timeout_seconds": schedule.timeout_seconds,
        "lease_seconds": schedule.lease_seconds,
    }


class Scheduler:
    """One pass: `run_once()` enqueues the due ticks of every due schedule."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.interval = settings.scheduler.interval
        self.cipher = PayloadCipher(settings.encryption.keys, settings.encryption.fields)
        self.counts: Counter[str] = Counter()
        self._configured = configured_schedules(settings)
        self._synced = False
        self._broken: set[str] = set()

    async def sync_configured(self) -> None:
        """Write the `schedules` section to the table, and drop the rows of schedules the
        configuration no longer defines (code-defined ones are left alone)."""
        if self._configured:
            await self.store.upsert_schedules(self._configured)
        names = [spec.name for spec in self._configured]
        dropped = await self.store.delete_unconfigured_schedules(CONFIG, names)
        if dropped:
            log.info("removed %d schedule(s) no longer in the configuration", dropped)
        self._synced = True

    async def run_once(self) -> int:
        """Enqueue every due tick; return how many jobs were created."""
        if not self._synced:
            await self.sync_configured()
        created = 0
        for schedule in await self.store.due_schedules(self.settings.scheduler.batch_size):
            try:
                created += await self._fire(schedule)
            except (CronSimError, ValueError, KeyError) as error:  # a row edited by hand
                self._report_broken(schedule.name, error)
        return created

    def _report_broken(self, name: str, error: Exception) -> None:
        """Once per schedule and process: the other schedules go on."""
        self.counts["broken"] += 1
        if name not in self._broken:
            self._broken.add(name)
            log.error("schedule %s cannot run (%s); fix or redefine it", name, error)

    async def _fire(self, schedule: DueSchedule) -> int:
        due = due_ticks(
            schedule.cron,
            schedule.timezone,
            schedule.next_run_at,
            schedule.now,
            schedule.misfire,
            schedule.backfill_limit,
            self.settings.scheduler.misfire_grace,
        )
        ids = [uuid7() for _ in due.ticks]
        keys: list[str | None] = [tick_key(schedule.name, tick) for tick in due.ticks]
        records = [
            job_record(schedule, job_id, self.cipher, key, tick)
            for job_id, key, tick in zip(ids, keys, due.ticks, strict=True)
        ]
        advance = Advance(
            name=schedule.name,
            expected=schedule.next_run_at,
            next_run_at=due.next_run_at,
            last_run_at=due.ticks[-1] if due.ticks else None,
            last_job_id=ids[-1] if ids else None,
        )
        jobs = orjson.dumps(records).decode()
        written = await self.store.fire_schedule(advance, jobs, ids, keys)
        if written is None:
            self.counts["lost_race"] += 1
            return 0
        fresh = len(set(written) & set(ids))
        skipped = self._missed(schedule, due.ticks)
        if fresh:
            self.counts["enqueued"] += fresh
            metrics.ENQUEUED.labels(schedule.queue_name, schedule.task).inc(fresh)
            log.info(
                "schedule %s: enqueued %d job(s) for tick(s) %s",
                schedule.name,
                fresh,
                ", ".join(tick.isoformat() for tick in due.ticks),
            )
        if skipped:
            self.counts["skipped"] += skipped
            log.warning(
                "schedule %s: ticks since %s were missed (no queuer ran); misfire policy %s",
                schedule.name,
                schedule.next_run_at.isoformat() if schedule.next_run_at else "?",
                schedule.misfire,
            )
        return fresh

    def _missed(self, schedule: DueSchedule, enqueued: list[Any]) -> int:
        """1 when ticks fell due that no job was made for (an operator wants to know)."""
        if schedule.next_run_at is None:
            return 0
        oldest = enqueued[0] if enqueued else None
        return int(oldest is None or oldest > schedule.next_run_at)
