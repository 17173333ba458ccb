"""What the admin layer reads: queue figures, workers, job listings and details, the audit
trail (admin_stats.sql, admin_jobs.sql).

Every statement here runs with prepare=False: a plan made for the actual values lets the
optional filters (NULL or not) fold away and keeps the partial indexes usable, where a
generic plan of a prepared statement would scan. Wide report rows come back as dicts keyed
by column name, which the admin layer maps at once into its own models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row, dict_row

from conveyor.scope import Scope
from conveyor.store.base import StoreBase

Report = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class JobPage:
    """The filters and the keyset position the job listings share (admin_list_jobs,
    admin_search_jobs)."""

    queue: str | None
    retry: bool | None
    before_created: datetime | str
    before_id: UUID
    min_age: float | None
    max_age: float | None
    min_priority: int
    max_priority: int
    text: str | None
    limit: int
    scope: Scope

    @property
    def params(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        scope: Scope = fields.pop("scope")
        return {**fields, **scope.params}


@dataclass(frozen=True)
class StatsSummaryRow:
    now: datetime
    workers_total: int
    workers_alive: int
    capacity: int
    busy: int
    p95_duration: float | None


@dataclass(frozen=True)
class StatsRows:
    queues: list[Report]  # admin_queue_stats, one row per queue
    summary: StatsSummaryRow


@dataclass(frozen=True)
class JobLinkRow:
    """A parent or a child of a job (admin_job_graph); status None: a pruned parent."""

    relation: str  # "parent" or "child"
    position: int
    id: UUID
    task: str | None
    status: str | None
    attempt: int | None
    queue_name: str | None


@dataclass(frozen=True)
class PrunePreview:
    finished: int  # completed or cancelled, past `retention`
    dead: int  # past `dead_retention`


@dataclass(frozen=True)
class WorkerRow:
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started: datetime
    last_heartbeat: datetime
    stopped: datetime | None
    jobs_in_flight: int
    heartbeat_age_seconds: float
    alive: bool
    uptime_seconds: float
    rss_bytes: int | None
    jobs_processed: int
    jobs_failed: int
    busy_seconds: float
    avg_processing_seconds: float | None
    postgres_only: bool
    breakers_open: list[str]


@dataclass(frozen=True)
class AttemptRow:
    status: str
    attempt_number: int
    log_message: str | None
    traceback: str | None
    worker_id: str | None
    started: datetime | None
    finished: datetime
    duration_seconds: float | None


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: Any
    result: str


@dataclass(frozen=True)
class _Known:
    known: bool


class AdminReads(StoreBase):
    async def ping(self) -> None:
        """One trivial statement: PostgreSQL answers (readiness, health)."""
        await self._execute("admin_ping", {})

    async def queue_stats(self, dead_after: float, scope: Scope) -> StatsRows:
        """Every queue's figures and the worker summary, pipelined: one round trip."""
        params = {"dead_after": dead_after, **scope.params}
        async with self.connection() as conn:
            async with conn.pipeline():
                per_queue = conn.cursor(row_factory=dict_row)
                summary = conn.cursor(row_factory=class_row(StatsSummaryRow))
                await per_queue.execute(self.queries["admin_queue_stats"], params, prepare=False)
                await summary.execute(self.queries["admin_stats_summary"], params, prepare=False)
            rows = await per_queue.fetchall()
            head = await summary.fetchone()
        if head is None:  # an aggregate without GROUP BY always returns one row
            raise RuntimeError("admin_stats_summary returned no row")
        return StatsRows(queues=rows, summary=head)

    async def workers(self, dead_after: float, scope: Scope) -> list[WorkerRow]:
        """Every registered worker the scope shows, live ones first."""
        params = {"dead_after": dead_after, **scope.params}
        return await self._rows("admin_workers", params, WorkerRow, prepare=False)

    async def queue_exists(self, queue: str, scope: Scope) -> bool:
        """True when the queue has a job_queues row or any job (of the scope's tenants)."""
        params = {"queue": queue, **scope.params}
        row = await self._row("admin_queue_exists", params, _Known, prepare=False)
        return row is not None and row.known

    async def prune_preview(self, retention: float, dead_retention: float) -> PrunePreview:
        """What the pruner would delete now with these retentions (admin_prune_preview)."""
        params = {"retention": retention, "dead_retention": dead_retention}
        row = await self._row("admin_prune_preview", params, PrunePreview, prepare=False)
        assert row is not None  # noqa: S101 - an aggregate always returns one row
        return row

    async def peek_jobs(
        self,
        queue: str,
        ids: list[UUID],
        count: int,
        min_priority: int,
        max_priority: int,
        scope: Scope,
    ) -> list[Report]:
        """Job rows (admin_peek) in run order: `ids` (Redis's pop order) first."""
        params = {
            "queue": queue,
            "ids": ids,
            "n": count,
            "min_priority": min_priority,
            "max_priority": max_priority,
            **scope.params,
        }
        return await self._dicts("admin_peek", params, prepare=False)

    async def limit_statement_time(self, milliseconds: int) -> None:
        """Stop this transaction's statements after `milliseconds` (SET LOCAL: only
        meaningful on a store bound to a transaction)."""
        await self._execute("admin_statement_timeout", {"milliseconds": milliseconds})

    async def list_jobs(
        self, rest_statuses: list[str], live_statuses: list[str], page: JobPage
    ) -> list[Report]:
        """One keyset page of job rows (admin_list_jobs), newest first."""
        params = {"rest_statuses": rest_statuses, "live_statuses": live_statuses, **page.params}
        return await self._dicts("admin_list_jobs", params, prepare=False)

    async def search_jobs(
        self, tags: list[str] | None, meta: str | None, statuses: list[str], page: JobPage
    ) -> list[Report]:
        """One keyset page of the jobs with every tag in `tags` and every pair of `meta`
        (a JSON object's text), newest first (admin_search_jobs)."""
        params = {"tags": tags, "meta": meta, "statuses": statuses, **page.params}
        return await self._dicts("admin_search_jobs", params, prepare=False)

    async def job_detail(
        self, job_id: UUID, ahead_cap: int, dead_after: float, scope: Scope, result_cap: int
    ) -> Report | None:
        """The job with its queue's state and the facts `why_waiting` needs (None: no
        such job in the scope); its result whole up to `result_cap` characters of JSON,
        else only their head (`result_head`)."""
        params = {
            "id": job_id,
            "ahead_cap": ahead_cap,
            "dead_after": dead_after,
            "result_cap": result_cap,
            **scope.params,
        }
        rows = await self._dicts("admin_job_detail", params, prepare=False)
        return rows[0] if rows else None

    async def job_graph(self, job_id: UUID, scope: Scope, limit: int) -> list[JobLinkRow]:
        """The job's parents (depends_on order) then children (oldest first), `limit` of
        each, within the scope (docs/workflows.md)."""
        params = {"id": job_id, "limit": limit, **scope.params}
        return await self._rows("admin_job_graph", params, JobLinkRow, prepare=False)

    async def job_attempts(self, job_id: UUID) -> list[AttemptRow]:
        """Every job_logs row of the job, oldest first."""
        return await self._rows("admin_job_attempts", {"id": job_id}, AttemptRow, prepare=False)

    async def audit_log(self, limit: int, scope: Scope) -> list[AuditRow]:
        """The newest audit_log rows about the scope first."""
        params = {"limit": limit, **scope.params}
        return await self._rows("admin_audit_log", params, AuditRow, prepare=False)
