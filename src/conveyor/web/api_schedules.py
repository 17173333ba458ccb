"""The schedules' part of the JSON API (see docs/scheduling.md): list them, and pause,
resume or trigger one (operator)."""

from __future__ import annotations

from conveyor.admin.schedules import ScheduleActionResult, ScheduleInfo
from conveyor.web.api_openapi import Operation

SCHEDULE_OPERATIONS: list[Operation] = [
    Operation(
        method="GET",
        path="/schedules",
        operation_id="listSchedules",
        tag="schedules",
        summary="Periodic jobs' schedules with their next and last runs.",
        role="viewer",
        response=list[ScheduleInfo],
        run=lambda c: c.admin.schedules(),
    ),
    Operation(
        method="POST",
        path="/schedules/{schedule}/pause",
        operation_id="pauseSchedule",
        tag="schedules",
        summary="Stop making jobs for a schedule (jobs already made are left alone).",
        role="operator",
        response=ScheduleActionResult,
        run=lambda c: c.admin.pause_schedule(actor=c.actor, **c.args),
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/schedules/{schedule}/resume",
        operation_id="resumeSchedule",
        tag="schedules",
        summary="Resume a schedule from its next tick (ticks while paused are not run).",
        role="operator",
        response=ScheduleActionResult,
        run=lambda c: c.admin.resume_schedule(actor=c.actor, **c.args),
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/schedules/{schedule}/trigger",
        operation_id="triggerSchedule",
        tag="schedules",
        summary="Enqueue one job of a schedule now; its own ticks go on unchanged.",
        role="operator",
        response=ScheduleActionResult,
        run=lambda c: c.admin.trigger_schedule(actor=c.actor, **c.args),
        errors=(404,),
    ),
]
