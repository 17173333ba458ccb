"""What the admin layer returns: plain dataclasses whose `to_dict()` is ready for JSON.

`to_dict()` turns datetimes into ISO 8601 strings and UUIDs into text, recursively, so the
HTTP API and `--json` print exactly the same shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from conveyor.jobs import QUEUED, RETRY_SCHEDULED
from conveyor.lanes import LaneName, lane_for_priority

Colour = Literal["green", "yellow", "red"]
T = TypeVar("T")


def plain(value: Any) -> Any:
    """A JSON-ready copy of `value` (dataclasses, dicts, lists, datetimes, UUIDs)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    return value


class Model:
    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = plain(self)
        return result


# -- stats ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LaneStats(Model):
    waiting: int
    oldest_waiting_age_seconds: float | None
    target_seconds: float


@dataclass(frozen=True, kw_only=True)
class QueueStats(Model):
    name: str
    paused: bool
    paused_at: datetime | None
    waiting: int  # ready in PostgreSQL (run_at <= now) plus dispatched to Redis
    lanes: dict[LaneName, LaneStats]
    dispatched: int  # of `waiting`, the ones already in the Redis buffer
    scheduled: int  # queued with run_at in the future, retry backoffs included
    running: int
    completed_last_hour: int
    failed_last_hour: int  # failed, dead and lost attempts
    dead: int
    oldest_waiting_age_seconds: float | None
    throughput_per_minute: float  # completions over the last five minutes, per minute
    target_seconds: float
    live_workers: int
    status: Colour
    reasons: list[str] = field(default_factory=list)  # why the colour is not green
    expired: int = 0  # jobs not started before their deadline, still kept
    awaiting_parents: int = 0  # status waiting: their depends_on have not all ended


@dataclass(frozen=True, kw_only=True)
class WorkersSummary(Model):
    total: int
    alive: int
    capacity: int  # concurrency summed over live workers
    busy: int  # jobs in flight on live workers


@dataclass(frozen=True, kw_only=True)
class Stats(Model):
    timestamp: datetime  # PostgreSQL's clock
    queues: list[QueueStats]
    workers: WorkersSummary
    p95_duration_seconds: float | None  # completed attempts of the last five minutes

    def queue(self, name: str) -> QueueStats | None:
        return next((queue for queue in self.queues if queue.name == name), None)


# -- jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class JobSummary(Model):
    id: UUID
    queue: str
    task: str
    status: str  # as shown: a queued job with attempts behind it is "retry_scheduled"
    stored_status: str
    priority: int
    lane: LaneName
    attempt: int
    max_attempts: int
    run_at: datetime
    created: datetime
    updated: datetime
    dispatched_at: datetime | None
    started: datetime | None
    completed: datetime | None
    failed: datetime | None
    worker_id: str | None
    last_error: str | None
    cancel_requested: bool
    tenant: str | None
    # The handler's latest ctx.set_progress (0.0-1.0), its message and when it was written;
    # kept after the job ends (docs/progress.md). None for a job that never reported.
    progress: float | None
    progress_message: str | None
    progress_at: datetime | None

    @staticmethod
    def fields_from_row(row: dict[str, Any]) -> dict[str, Any]:
        status = row["status"]
        shown = RETRY_SCHEDULED if status == QUEUED and row["attempt"] > 0 else status
        return {
            "id": row["id"],
            "queue": row["queue_name"],
            "task": row["task"],
            "status": shown,
            "stored_status": status,
            "priority": row["priority"],
            "lane": lane_for_priority(row["priority"]),
            "attempt": row["attempt"],
            "max_attempts": row["max_attempts"],
            "run_at": row["run_at"],
            "created": row["created"],
            "updated": row["updated"],
            "dispatched_at": row["dispatched_at"],
            "started": row["started"],
            "completed": row["completed"],
            "failed": row["failed"],
            "worker_id": row["worker_id"],
            "last_error": row["last_error"],
            "cancel_requested": row["cancel_requested"],
            "tenant": row["tenant"],
            "progress": row["progress"],
            "progress_message": row["progress_message"],
            "progress_at": row["progress_at"],
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobSummary:
        return cls(**cls.fields_from_row(row))


@dataclass(frozen=True, kw_only=True)
class Page(Model, Generic[T]):
    items: list[T]
    next_cursor: str | None  # pass as `after=` for the next page; None on the last one


@dataclass(frozen=True, kw_only=True)
class Attempt(Model):
    status: str  # completed, failed, dead, lost, cancelled, handed_back, retried, snoozed, expired
    attempt_number: int
    message: str | None
    traceback: str | None
    worker_id: str | None
    started: datetime | None
    finished: datetime
    duration_seconds: float | None


@dataclass(frozen=True, kw_only=True)
class JobLink(Model):
    """A parent or a child of a job in a workflow (docs/workflows.md)."""

    id: UUID
    task: str | None  # None: a parent retention has pruned
    status: str | None
    queue: str | None


@dataclass(frozen=True, kw_only=True)
class JobDetail(JobSummary):
    payload: Any
    idempotency_key: str | None
    lease_expires_at: datetime | None
    timeout_seconds: float | None
    attempts: list[Attempt]
    why_waiting: str | None  # a sentence for a job that is not running yet
    unique_key: str | None = None  # the dedup key it was enqueued with (docs/scheduling.md)
    # What the handler returned (docs/results.md), encrypted fields still sealed; when its
    # JSON is longer than 64 KiB, the first 64 KiB of it as text, and result_truncated.
    result: Any = None
    result_truncated: bool = False
    result_error: str | None = None  # why a completed job's result was not kept
    tags: list[str] = field(default_factory=list)  # as enqueued (docs/progress.md)
    meta: dict[str, Any] = field(default_factory=dict)
    # Workflows (docs/workflows.md): the jobs it waits on, in depends_on order, and the jobs
    # that wait on it (the first LINKS_SHOWN of each); how many parents have not ended yet,
    # and what a parent that did not complete does to it (None: it has no parents).
    parents: list[JobLink] = field(default_factory=list)
    children: list[JobLink] = field(default_factory=list)
    pending_parents: int | None = None
    on_parent_failure: str | None = None


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class JobActionResult(Model):
    action: str  # retry, delete, cancel
    job_id: UUID
    changed: bool
    previous_status: str
    status: str  # after the action: queued, deleted, cancelled, running (cancel requested)
    message: str


@dataclass(frozen=True, kw_only=True)
class BulkResult(Model):
    action: str  # retry_dead, retry_jobs, delete_jobs, purge_dead, clear_failed
    dry_run: bool
    count: int  # jobs changed (or, in a dry run, that would change)
    sample: list[UUID]  # some of their ids (all of them up to the sample size)
    skipped: list[UUID] = field(default_factory=list)  # given ids that did not qualify
    queue: str | None = None
    message: str = ""


PurgeResult = BulkResult


@dataclass(frozen=True, kw_only=True)
class QueueActionResult(Model):
    action: str  # pause, resume
    queue: str
    changed: bool  # False when the queue already was in that state
    requeued: int  # dispatched jobs taken back from Redis (pause)
    redis_synced: bool  # False when Redis could not be told (PostgreSQL still governs)
    message: str


@dataclass(frozen=True, kw_only=True)
class WorkerInfo(Model):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started: datetime
    last_heartbeat: datetime
    heartbeat_age_seconds: float
    jobs_in_flight: int
    stopped: datetime | None
    alive: bool
    # Health, from the worker's heartbeats: totals since the worker process started.
    uptime_seconds: float
    rss_bytes: int | None  # resident memory at the last heartbeat (None: not reported)
    jobs_processed: int  # attempts that ended (completed, failed, dead or cancelled)
    jobs_failed: int  # of those, the failed ones (retried or dead)
    busy_seconds: float  # handler run time of those attempts
    avg_processing_seconds: float | None  # busy_seconds / jobs_processed
    postgres_only: bool  # claiming from PostgreSQL: no Redis answers this worker
    breakers_open: list[str]  # queues whose circuit breaker is open in this worker


@dataclass(frozen=True, kw_only=True)
class AuditEntry(Model):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: Any
    result: str
