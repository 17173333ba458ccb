"""Schedule definitions and their ticks: what a periodic job is, and which of its ticks
are due at a given moment of PostgreSQL's clock.

Cron expressions are the usual five fields (minute hour day-of-month month day-of-week),
parsed and iterated by `cronsim`, in the schedule's IANA time zone (zoneinfo). A tick is a
wall-clock time in that zone: on a spring-forward day a 02:30 tick that does not exist
runs at 03:00; on a fall-back day a 02:30 that happens twice runs once (a cron whose hour
is `*` runs in both passes through the repeated hour, keeping its interval).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from conveyor.tasks import check_priority, check_queue_name

Misfire = Literal["skip", "run_once", "backfill"]
MISFIRE_POLICIES: tuple[str, ...] = get_args(Misfire)
# Task names (the default schedule name) may hold any of these; '/' and spaces would not
# fit the API's /api/schedules/<name>/... paths.
SCHEDULE_NAME = re.compile(r"^[^\s/]{1,200}$")
CODE, CONFIG = "code", "config"
# Iterating ticks is bounded: a backfill never reaches further back than this many ticks.
MAX_BACKFILL = 1000


class ScheduleError(ValueError):
    """A schedule definition that cannot work (bad cron, time zone, name, policy)."""


def check_cron(cron: object) -> str:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ScheduleError(
            f"cron {cron!r} must have five fields: minute hour day-of-month month day-of-week"
        )
    try:
        CronSim(cron, datetime.now(UTC))
    except CronSimError as error:
        raise ScheduleError(f"cron {cron!r} is not a valid expression: {error}") from None
    return cron


def check_timezone(name: object) -> str:
    try:
        ZoneInfo(name)  # type: ignore[arg-type]
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"timezone {name!r} is not an IANA time zone (e.g. UTC, Europe/Paris)"
        ) from None
    return str(name)


def check_schedule_name(name: object) -> str:
    if not isinstance(name, str) or not SCHEDULE_NAME.match(name):
        raise ScheduleError(
            f"schedule name {name!r} must be 1-200 characters without spaces or '/'"
        )
    return name


def check_misfire(misfire: object, backfill_limit: object) -> tuple[str, int]:
    if misfire not in MISFIRE_POLICIES:
        raise ScheduleError(
            f"misfire must be one of {', '.join(MISFIRE_POLICIES)}, not {misfire!r}"
        )
    if (
        isinstance(backfill_limit, bool)
        or not isinstance(backfill_limit, int)
        or not 1 <= backfill_limit <= MAX_BACKFILL
    ):
        raise ScheduleError(
            f"backfill_limit must be an integer from 1 to {MAX_BACKFILL}, not {backfill_limit!r}"
        )
    return str(misfire), backfill_limit


@dataclass(frozen=True)
class ScheduleFields:
    """What defines a schedule: the columns every reading of a `schedules` row carries."""

    name: str
    task: str
    cron: str
    timezone: str
    payload: Any
    queue_name: str
    priority: int
    max_attempts: int
    timeout_seconds: float | None
    lease_seconds: float | None
    misfire: str
    backfill_limit: int


@dataclass(frozen=True)
class ScheduleSpec(ScheduleFields):
    """One schedule as the `schedules` table stores it (the row `upsert_schedules` reads).
    `payload` is the JSON value every tick's job gets."""

    source: str

    def __post_init__(self) -> None:
        check_schedule_name(self.name)
        check_cron(self.cron)
        check_timezone(self.timezone)
        check_misfire(self.misfire, self.backfill_limit)
        try:
            check_queue_name(self.queue_name)
            check_priority(self.priority)
        except ValueError as error:
            raise ScheduleError(f"schedule {self.name!r}: {error}") from None

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DueTicks:
    """What one pass does for one schedule: enqueue `ticks` (oldest first) and move
    `next_run_at` to the first tick after now."""

    ticks: list[datetime]
    next_run_at: datetime


def _after(cron: str, zone: ZoneInfo, moment: datetime) -> Iterator[datetime]:
    return iter(CronSim(cron, moment.astimezone(zone)))


def _at_or_before(cron: str, zone: ZoneInfo, moment: datetime) -> Iterator[datetime]:
    # cronsim's reverse iteration starts strictly before its start: a second later
    # includes a tick that falls exactly on `moment`.
    start = moment.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)
    return iter(CronSim(cron, start, reverse=True))


def next_tick(cron: str, timezone: str, moment: datetime) -> datetime:
    """The first tick strictly after `moment`, in UTC."""
    return next(_after(cron, ZoneInfo(timezone), moment)).astimezone(UTC)


def due_ticks(
    cron: str,
    timezone: str,
    next_run_at: datetime | None,
    now: datetime,
    misfire: str,
    backfill_limit: int,
    grace: float,
) -> DueTicks:
    """The ticks to enqueue now. `next_run_at` is the earliest tick not yet enqueued (None:
    a schedule seen for the first time, which starts with its next tick). A tick at most
    `grace` seconds old is on time and always runs; older ones were missed (the queuers
    were down) and the misfire policy decides: `skip` runs none of them, `run_once` runs
    the latest one, `backfill` runs the latest `backfill_limit` ones."""
    zone = ZoneInfo(timezone)
    following = next(_after(cron, zone, now)).astimezone(UTC)
    if next_run_at is None:
        return DueTicks([], following)
    keep = backfill_limit if misfire == "backfill" else 1
    recent: list[datetime] = []
    for tick in _at_or_before(cron, zone, now):
        if tick < next_run_at or len(recent) >= keep:
            break
        recent.append(tick.astimezone(UTC))
    if misfire == "skip":
        recent = [tick for tick in recent if (now - tick).total_seconds() <= grace]
    return DueTicks(sorted(recent), following)


def tick_key(schedule: str, tick: datetime) -> str:
    """The idempotency key of a tick's job: a second guard, after the schedule row's, that
    no tick is enqueued twice (a definition re-synced with the same tick, say)."""
    return f"cron:{schedule}:{tick.astimezone(UTC).isoformat()}"
