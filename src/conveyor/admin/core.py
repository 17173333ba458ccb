"""`Admin`: operations as a library, for the CLI, the HTTP API and the dashboard alike.

    async with Admin(settings) as admin:
        stats = await admin.stats()
        await admin.pause("email-sending", actor="cli:alice")

Reads never change anything. Every action takes `actor` and writes one audit_log row in
the same transaction as its change. Bad input raises AdminError (a ValueError) before
anything is touched; AdminNotFound and AdminConflict refine it; an outage raises
AdminUnavailable. `health()` never raises.
"""

from __future__ import annotations

from conveyor.admin.actions import JobActionsMixin
from conveyor.admin.alerts import AlertsMixin
from conveyor.admin.batches import BatchesMixin
from conveyor.admin.health import HealthMixin
from conveyor.admin.history import HistoryMixin
from conveyor.admin.jobs import JobsMixin
from conveyor.admin.limits import LimitsMixin
from conveyor.admin.queues import QueueActionsMixin
from conveyor.admin.replay import ReplayEditMixin
from conveyor.admin.scaling import ScalingMixin
from conveyor.admin.schedules import SchedulesMixin
from conveyor.admin.sessions import WebSessionsMixin


class Admin(
    HealthMixin,
    JobsMixin,
    JobActionsMixin,
    ReplayEditMixin,
    QueueActionsMixin,
    WebSessionsMixin,
    AlertsMixin,
    HistoryMixin,
    ScalingMixin,
    SchedulesMixin,
    LimitsMixin,
    BatchesMixin,
):
    """Stats, peek, job listings and details, retry / replay (also with an edited payload) /
    delete / cancel, pause and
    resume, purge of dead jobs, workers, the audit log, system health, the web's
    login sessions, the metrics history, the scaling signal, the periodic jobs'
    schedules, the global rate and concurrency limits and the batches."""


__all__ = ["Admin"]
