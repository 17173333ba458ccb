"""Periodic jobs declared in code: `@app.periodic(...)` and `app.schedule(...)`.

The app only records the definitions; `conveyor worker` (which imports the app) writes
them to the `schedules` table when it starts (`sync_schedules`), and the queuers, which
never import the app, create the jobs from the table (see conveyor/scheduler.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from conveyor import client
from conveyor.config import Settings
from conveyor.schedules import CODE, ScheduleSpec
from conveyor.store.schedules import SyncSchedules
from conveyor.tasks import Task

if TYPE_CHECKING:
    from conveyor.store import Store

TaskFunction = Callable[..., Any]


class PeriodicMixin:
    settings: Settings
    tasks: dict[str, Task]
    schedules: dict[str, ScheduleSpec]

    if TYPE_CHECKING:

        def task(self, func: TaskFunction, /) -> Task: ...

    def periodic(
        self,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        name: str | None = None,
        misfire: str = "skip",
        backfill_limit: int = 10,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Callable[[TaskFunction | Task], Task]:
        """Run a task on a cron schedule: `@app.periodic("*/5 * * * *", timezone="Europe/Paris")`
        above `@app.task(...)`, or alone on a plain function (which becomes a task)."""

        def register(target: TaskFunction | Task) -> Task:
            task = target if isinstance(target, Task) else self.task(target)
            self.schedule(
                task,
                cron=cron,
                timezone=timezone,
                payload=payload,
                name=name,
                misfire=misfire,
                backfill_limit=backfill_limit,
                queue=queue,
                priority=priority,
            )
            return task

        return register

    def schedule(
        self,
        task: Task | str,
        *,
        cron: str,
        payload: Any = None,
        name: str | None = None,
        timezone: str = "UTC",
        misfire: str = "skip",
        backfill_limit: int = 10,
        queue: str | None = None,
        priority: int | None = None,
    ) -> ScheduleSpec:
        """Define a schedule for a registered task (named after the task unless `name`).
        `misfire` says what happens to ticks missed while no queuer ran: `skip` them,
        `run_once` for all of them, or `backfill` up to `backfill_limit` of them. Raises
        ValueError (naming the field) for a bad cron, time zone, payload or policy."""
        resolved = client.resolve_task(self.tasks, task)
        # Checked and serialised like an enqueue's payload (schema, size); stored as JSON.
        # No payload is {} (a job's payload is never null), so the handler's schema sees that.
        given = {} if payload is None else payload
        encoded = resolved.encode_payload(given, self.settings.jobs.max_payload_bytes)
        spec = ScheduleSpec(
            name=name or resolved.name,
            task=resolved.name,
            cron=cron,
            timezone=timezone,
            payload=orjson.loads(encoded),
            queue_name=queue or resolved.queue,
            priority=resolved.priority if priority is None else priority,
            max_attempts=resolved.max_attempts,
            timeout_seconds=resolved.timeout,
            lease_seconds=resolved.lease,
            misfire=misfire,
            backfill_limit=backfill_limit,
            source=CODE,
        )
        if spec.name in self.schedules:
            raise ValueError(f"a schedule named {spec.name!r} is already defined")
        self.schedules[spec.name] = spec
        return spec

    def sync_schedules(self) -> int:
        """Write this app's schedules to the `schedules` table (new or changed ones);
        `conveyor worker` does it at start. Return how many rows changed."""
        if not self.schedules:
            return 0
        with SyncSchedules.open(self.settings, "client", size=1) as statements:
            return statements.upsert_schedules(list(self.schedules.values()))

    async def async_schedules(self, store: Store) -> int:
        """`sync_schedules` on an async store."""
        if not self.schedules:
            return 0
        return await store.upsert_schedules(list(self.schedules.values()))
