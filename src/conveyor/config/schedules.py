"""The `scheduler` section (how often every queuer looks for due ticks) and the
`schedules` section (periodic jobs defined in configuration, name -> definition).

A definition is checked here, field by field, so a bad cron or time zone stops the
process at start with the key named; the queuer writes the definitions to the
`schedules` table (see conveyor/scheduler.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from conveyor.config.base import _Section
from conveyor.durations import Interval, NonNegDuration, PosInt, lowercase
from conveyor.schedules import MAX_BACKFILL, check_cron, check_timezone
from conveyor.tasks import check_queue_name
from conveyor.vocabulary import MAX_PRIORITY, MIN_PRIORITY


class SchedulerSettings(_Section):
    enabled: bool = True
    # How often each queuer looks for due ticks: a tick's job is created at most this late.
    interval: Interval = 1.0
    # A tick at most this old when a queuer sees it is on time; older ones were missed
    # (no queuer ran) and the schedule's misfire policy decides what happens to them.
    misfire_grace: NonNegDuration = 60.0
    # Due schedules handled per pass; the rest wait for the next pass.
    batch_size: PosInt = 100


class ScheduleSettings(_Section):
    task: Annotated[str, Field(min_length=1, max_length=200)]
    cron: Annotated[str, AfterValidator(check_cron)]
    timezone: Annotated[str, AfterValidator(check_timezone)] = "UTC"
    payload: Any = None
    queue: Annotated[str, AfterValidator(check_queue_name)] = "default"
    priority: Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] | None = None
    max_attempts: PosInt | None = None
    timeout: Interval | None = None
    misfire: Annotated[Literal["skip", "run_once", "backfill"], BeforeValidator(lowercase)] = "skip"
    backfill_limit: Annotated[int, Field(ge=1, le=MAX_BACKFILL)] = 10
