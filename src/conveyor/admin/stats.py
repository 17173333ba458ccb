"""Queue figures for the dashboard, the CLI and health: one round trip to PostgreSQL."""

from __future__ import annotations

from typing import Any

from conveyor.admin.base import AdminBase
from conveyor.admin.models import (
    Colour,
    LaneStats,
    QueueStats,
    Stats,
    WorkerInfo,
    WorkersSummary,
)
from conveyor.config import Settings
from conveyor.vocabulary import LANES, LaneName


def queue_colour(
    settings: Settings,
    name: str,
    waiting: int,
    failed_last_hour: int,
    lanes: dict[LaneName, LaneStats],
) -> tuple[Colour, list[str]]:
    """Green, yellow or red, with the reasons (thresholds come from the settings).

    Red: more than critical_waiting jobs waiting, more than critical_failures_per_hour
    failed attempts in the last hour, or a lane whose oldest job has waited longer than
    that lane's target. Yellow: warning_waiting jobs or more waiting.
    """
    warning, critical, critical_failures = settings.queue_thresholds(name)
    red: list[str] = []
    if waiting > critical:
        red.append(f"{waiting} jobs waiting, over the critical level of {critical}")
    if failed_last_hour > critical_failures:
        red.append(f"{failed_last_hour} failed attempts in the last hour, over {critical_failures}")
    for lane, figures in lanes.items():
        age = figures.oldest_waiting_age_seconds
        if age is not None and age > figures.target_seconds:
            red.append(
                f"the oldest {lane}-priority job has waited {age:.0f} s, "
                f"over its {figures.target_seconds:g} s target"
            )
    if red:
        return "red", red
    if waiting >= warning:
        return "yellow", [f"{waiting} jobs waiting (warning from {warning})"]
    return "green", []


def queue_stats_from_row(settings: Settings, row: dict[str, Any]) -> QueueStats:
    name = row["name"]
    lanes: dict[LaneName, LaneStats] = {
        lane: LaneStats(
            waiting=row[f"waiting_{lane}"],
            oldest_waiting_age_seconds=_age(row[f"oldest_{lane}"]),
            target_seconds=settings.queue_target(name, lane),
        )
        for lane in LANES
    }
    waiting = sum(lane.waiting for lane in lanes.values())
    ages = [lane.oldest_waiting_age_seconds for lane in lanes.values()]
    known_ages = [age for age in ages if age is not None]
    colour, reasons = queue_colour(settings, name, waiting, row["failed_last_hour"], lanes)
    return QueueStats(
        name=name,
        paused=row["paused"],
        paused_at=row["paused_at"],
        waiting=waiting,
        lanes=lanes,
        dispatched=row["dispatched"],
        scheduled=row["scheduled"],
        running=row["running"],
        completed_last_hour=row["completed_last_hour"],
        failed_last_hour=row["failed_last_hour"],
        dead=row["dead"],
        expired=row["expired"],
        awaiting_parents=row["awaiting_parents"],
        oldest_waiting_age_seconds=max(known_ages) if known_ages else None,
        throughput_per_minute=row["completed_5m"] / 5.0,
        target_seconds=settings.queue_target(name),
        live_workers=row["live_workers"],
        status=colour,
        reasons=reasons,
    )


def _age(value: float | None) -> float | None:
    # A run_at set by a clock slightly ahead of PostgreSQL's must not read as negative.
    return None if value is None else max(0.0, round(value, 3))


class StatsMixin(AdminBase):
    async def stats(self) -> Stats:
        """Per queue: paused, waiting by lane, scheduled, running, last-hour completions and
        failures, dead, oldest wait, throughput and a colour; plus the workers."""
        found = await self.read(self.store.queue_stats(self.settings.worker.dead_after, self.scope))
        head = found.summary
        return Stats(
            timestamp=head.now,
            queues=[queue_stats_from_row(self.settings, row) for row in found.queues],
            workers=WorkersSummary(
                total=head.workers_total,
                alive=head.workers_alive,
                capacity=head.capacity,
                busy=head.busy,
            ),
            p95_duration_seconds=head.p95_duration,
        )

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker, live ones first. `alive`: heartbeat within
        worker.dead_after and not stopped. Workers serve queues, not tenants: a
        tenant-scoped caller sees none, a queue-scoped one those of its queues."""
        rows = await self.read(self.store.workers(self.settings.worker.dead_after, self.scope))
        return [
            # The row has the model's fields; only the ages are rounded for display.
            WorkerInfo(
                **{
                    **vars(row),
                    "heartbeat_age_seconds": max(0.0, round(row.heartbeat_age_seconds, 3)),
                    "uptime_seconds": max(0.0, round(row.uptime_seconds, 3)),
                }
            )
            for row in rows
        ]
