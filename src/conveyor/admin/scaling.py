"""The scaling signal: how many worker slots each queue needs now (GET /api/scaling, the
`conveyor_desired_workers` gauge), for an external autoscaler (KEDA, a Kubernetes HPA).

Per queue, over the last `autoscale.signal_window` of the per-minute rollup:

    λ (arrival rate, jobs/s)   = jobs enqueued in the window / window seconds
    W (average run time, s)    = handler seconds / attempts finished in the window
    steady slots               = λ · W            (Little's law: L = λW jobs in service)
    backlog slots              = depth · W / T    (clear today's depth within the target T)
    desired slots              = ceil(steady + backlog)
    desired workers            = ceil(desired slots / worker.count)

A queue with jobs waiting but no finished attempt in the window (W unknown) asks for one
slot: something has to run them before their run time can be known. docs/autoscaling.md
has a worked example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from conveyor.admin.base import AdminBase
from conveyor.admin.models import Model
from conveyor.autoscale import AUDIT_ACTION, AUDIT_ACTOR
from conveyor.store.scaling import ScalingRow


@dataclass(frozen=True, kw_only=True)
class QueueScaling(Model):
    queue: str
    waiting: int
    arrival_rate_per_second: float  # λ
    average_run_seconds: float | None  # W; None: no attempt finished in the window
    target_seconds: float  # T, the queue's latency target
    steady_slots: float  # λ·W
    backlog_slots: float  # depth·W/T
    desired_slots: int
    desired_workers: int


@dataclass(frozen=True, kw_only=True)
class Scaling(Model):
    window_seconds: float
    slots_per_worker: int  # worker.count: jobs one worker process runs at once
    desired_slots: int  # every queue's, summed
    desired_workers: int  # ceil(desired_slots / slots_per_worker)
    queues: list[QueueScaling]


@dataclass(frozen=True, kw_only=True)
class AutoscaleDecision(Model):
    at: datetime
    direction: str  # up or down
    processes: str  # "from->to"
    reason: str
    detail: str


def _ceil(value: float) -> int:
    # 2.0000000001 (float noise from a sum of products) is 2 slots, not 3.
    return math.ceil(round(value, 6))


def queue_scaling(
    row: ScalingRow, window_seconds: float, target: float, per_worker: int
) -> QueueScaling:
    rate = row.enqueued / window_seconds
    run = row.run_seconds / row.finished if row.finished else None
    if run is None:
        steady, backlog, slots = 0.0, 0.0, 1 if row.waiting else 0
    else:
        steady, backlog = rate * run, row.waiting * run / target
        slots = _ceil(steady + backlog)
    return QueueScaling(
        queue=row.queue_name,
        waiting=row.waiting,
        arrival_rate_per_second=round(rate, 6),
        average_run_seconds=None if run is None else round(run, 6),
        target_seconds=target,
        steady_slots=round(steady, 6),
        backlog_slots=round(backlog, 6),
        desired_slots=slots,
        desired_workers=math.ceil(slots / per_worker),
    )


class ScalingMixin(AdminBase):
    async def scaling(self) -> Scaling:
        """Worker slots each queue needs now, from depth, arrival rate, average run time
        and latency target (Little's law; see this module's docstring)."""
        minutes = self.settings.autoscale.signal_minutes
        rows = await self.read(self.store.scaling_figures(minutes, self.scope))
        per_worker = self.settings.worker.count
        window = minutes * 60.0
        queues = [
            queue_scaling(row, window, self.settings.queue_target(row.queue_name), per_worker)
            for row in rows
        ]
        slots = sum(queue.desired_slots for queue in queues)
        return Scaling(
            window_seconds=window,
            slots_per_worker=per_worker,
            desired_slots=slots,
            desired_workers=math.ceil(slots / per_worker),
            queues=queues,
        )

    async def autoscale_decisions(self, limit: int = 10) -> list[AutoscaleDecision]:
        """The newest decisions of the worker supervisors' autoscalers. They concern
        processes serving every tenant: only an unrestricted caller sees them."""
        if not self.scope.unrestricted:
            return []
        rows = await self.read(self.store.autoscale_decisions(AUDIT_ACTOR, AUDIT_ACTION, limit))
        return [
            AutoscaleDecision(
                at=row.at,
                direction=row.direction,
                processes=row.target or "",
                reason=row.reason or "",
                detail=row.detail or "",
            )
            for row in rows
        ]
