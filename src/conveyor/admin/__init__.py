"""The admin layer: every operation the CLI, the HTTP API and the dashboard offer."""

from conveyor.admin.base import default_actor
from conveyor.admin.batches import BatchDetail, BatchJobSummary, BatchSummary
from conveyor.admin.core import Admin
from conveyor.admin.errors import (
    AdminConflict,
    AdminError,
    AdminForbidden,
    AdminNotFound,
    AdminUnavailable,
)
from conveyor.admin.health import (
    DatabaseHealth,
    HealthStatus,
    PerformanceHealth,
    QueueHealth,
    QueuesHealth,
    RedisHealth,
    SystemHealth,
    WorkersHealth,
)
from conveyor.admin.models import (
    Attempt,
    AuditEntry,
    BulkResult,
    JobActionResult,
    JobDetail,
    JobLink,
    JobSummary,
    LaneStats,
    Page,
    PurgeResult,
    QueueActionResult,
    QueueStats,
    Stats,
    WorkerInfo,
    WorkersSummary,
)
from conveyor.scope import UNRESTRICTED, Scope

__all__ = [
    "UNRESTRICTED",
    "Admin",
    "AdminConflict",
    "AdminError",
    "AdminForbidden",
    "AdminNotFound",
    "AdminUnavailable",
    "Attempt",
    "AuditEntry",
    "BatchDetail",
    "BatchJobSummary",
    "BatchSummary",
    "BulkResult",
    "DatabaseHealth",
    "HealthStatus",
    "JobActionResult",
    "JobDetail",
    "JobLink",
    "JobSummary",
    "LaneStats",
    "Page",
    "PerformanceHealth",
    "PurgeResult",
    "QueueActionResult",
    "QueueHealth",
    "QueueStats",
    "QueuesHealth",
    "RedisHealth",
    "Scope",
    "Stats",
    "SystemHealth",
    "WorkerInfo",
    "WorkersHealth",
    "WorkersSummary",
    "default_actor",
]
