"""The worker's statements: register, claim (popped ids, or straight from PostgreSQL when
no Redis answers), heartbeat, record outcomes, deregister.

These run on the hot path, so each keeps its one round trip and its cheap parameters
(one array literal for the claimed ids, one JSON array for a batch of outcomes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import orjson

from conveyor import vocabulary as v
from conveyor.store.base import StoreBase

# What the job row becomes when an attempt ends with each log status.
_JOB_STATUS = {
    v.LOG_COMPLETED: v.COMPLETED,
    v.LOG_FAILED: v.QUEUED,
    v.LOG_DEAD: v.DEAD,
    v.LOG_CANCELLED: v.CANCELLED,
    v.LOG_HANDED_BACK: v.QUEUED,
    v.LOG_SNOOZED: v.QUEUED,
}


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now owns (a row of `claim_jobs`)."""

    id: UUID
    queue: str
    task: str
    priority: int
    payload: Any
    attempt: int
    max_attempts: int
    token: int
    timeout: float | None
    waited: float
    # W3C traceparent/tracestate of the enqueue (None unless the producer was traced).
    trace_context: dict[str, str] | None = None
    # Snoozes so far: free up to the task's max_snoozes (see conveyor.outcomes.Snooze).
    snoozes: int = 0
    # Its parents' ids and results, [{"id", "result"}] in depends_on order (None unless it
    # was enqueued with depends_on; docs/workflows.md).
    parent_results: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class UnreadablePayload:
    """A stored payload the worker's JSON parser refuses (PostgreSQL keeps numbers such
    as 1e400 that no double holds): its own job fails, not the whole claim batch."""

    reason: str


def _parsed(text: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return UnreadablePayload(str(error))


@dataclass(frozen=True)
class HeartbeatResult:
    """`registered` is False when the registry row is gone (pruned): register again."""

    registered: bool
    owned: list[UUID]
    cancel_requested: list[UUID]


@dataclass(frozen=True)
class WorkerVitals:
    """What a worker reports about itself in each heartbeat: totals since it started
    (attempts ended, failed ones, handler run time), its resident memory (None when the
    platform cannot tell), whether it is in postgres-only mode, and the queues whose
    circuit breaker is open in it now."""

    rss_bytes: int | None = None
    jobs_processed: int = 0
    jobs_failed: int = 0
    busy_seconds: float = 0.0
    postgres_only: bool = False
    breakers_open: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, in the shape `record_outcomes` takes."""

    job_id: UUID
    token: int
    log_status: str
    duration: float
    error: str | None = None
    traceback: str | None = None
    retry_in: float | None = None
    queue: str = ""
    task: str = ""
    # A completed handler's return value as JSON text, sealed and size-checked
    # (conveyor.results); or, when it could not be kept, why not.
    result: str | None = None
    result_error: str | None = None
    # Never written: what middleware events read once the outcome is committed
    # (conveyor.middleware): the attempt's job, the handler's return value, its error.
    claimed: ClaimedJob | None = field(default=None, compare=False, repr=False)
    value: Any = field(default=None, compare=False, repr=False)
    raised: BaseException | None = field(default=None, compare=False, repr=False)
    # The handler's latest set_progress, when no heartbeat has written it yet.
    progress: float | None = None
    progress_message: str | None = None

    @property
    def job_status(self) -> str:
        return _JOB_STATUS[self.log_status]

    @property
    def attempt_delta(self) -> int:
        # A handed-back or snoozed attempt does not count: the job gets it back.
        return -1 if self.log_status in (v.LOG_HANDED_BACK, v.LOG_SNOOZED) else 0


def outcome_params(outcomes: Sequence[Outcome]) -> dict[str, str]:
    """The `record_outcomes` parameter: the whole batch as one JSON array."""
    records = []
    for o in outcomes:
        record: dict[str, Any] = {
            "id": o.job_id,
            "token": o.token,
            "status": o.job_status,
            "retry_in": o.retry_in,
            "error": o.error,
            "traceback": o.traceback,
            "duration": o.duration,
            "log_status": o.log_status,
            "attempt_delta": o.attempt_delta,
        }
        # Only when there is one: a job without a result adds no byte to the batch. The
        # result is JSON already; a Fragment puts it in the array as it is.
        if o.result is not None:
            record["result"] = orjson.Fragment(o.result)
        if o.result_error is not None:
            record["result_error"] = o.result_error
        if o.progress is not None:  # same reason
            record["progress"] = o.progress
            record["progress_message"] = o.progress_message
        records.append(record)
    return {"outcomes": orjson.dumps(records).decode()}


@dataclass(frozen=True)
class _JobId:
    id: UUID


class WorkStatements(StoreBase):
    async def register_worker(
        self, worker_id: str, host: str, pid: int, queues: Sequence[str], concurrency: int
    ) -> None:
        """Insert or revive this worker's registry row."""
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
        }
        await self._execute("register_worker", params)

    async def claim_jobs(
        self, ids: Sequence[str], worker_id: str, lease: float
    ) -> list[ClaimedJob]:
        """Claim popped ids (UUID text, already checked); ids that cannot be claimed are
        simply not returned."""
        if not ids:
            return []
        params = {
            # One array literal: far cheaper than dumping a list element by element.
            "ids": "{" + ",".join(ids) + "}",
            "worker_id": worker_id,
            "lease": lease,
        }
        rows = await self._rows("claim_jobs", params, ClaimedJob)
        return [replace(job, payload=_parsed(job.payload)) for job in rows]

    async def claim_ready_direct(
        self, queues: Sequence[str], limit: int, worker_id: str, lease: float
    ) -> list[ClaimedJob]:
        """Postgres-only mode: claim up to `limit` ready or dispatched jobs of `queues`
        (active ones only), most urgent first, without going through Redis."""
        if not queues or limit <= 0:
            return []
        params = {"queues": list(queues), "limit": limit, "worker_id": worker_id, "lease": lease}
        return await self._rows("claim_ready_direct", params, ClaimedJob)

    async def heartbeat(
        self,
        worker_id: str,
        lease: float,
        ids: Sequence[UUID],
        tokens: Sequence[int],
        vitals: WorkerVitals,
        progress: Sequence[tuple[float, str | None] | None] | None = None,
    ) -> HeartbeatResult:
        """Beat for the worker, write its vitals, renew the leases of its attempts (`ids`
        with `tokens`) and write their new progress (`progress`, in the same order: a
        (fraction, message) or None where there is nothing new)."""
        reports = list(progress) if progress is not None else [None] * len(ids)
        params = {
            "worker_id": worker_id,
            "lease": lease,
            "ids": list(ids),
            "tokens": list(tokens),
            "progress": [r[0] if r is not None else None for r in reports],
            "progress_messages": [r[1] if r is not None else None for r in reports],
            "rss_bytes": vitals.rss_bytes,
            "jobs_processed": vitals.jobs_processed,
            "jobs_failed": vitals.jobs_failed,
            "busy_seconds": vitals.busy_seconds,
            "postgres_only": vitals.postgres_only,
            "breakers_open": list(vitals.breakers_open),
        }
        result = await self._row("heartbeat", params, HeartbeatResult)
        if result is None:  # the statement always returns one row
            raise RuntimeError("heartbeat returned no row")
        return result

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[UUID]:
        """Write a batch of outcomes; return the ids that landed (the others were fenced:
        their attempt no longer owns the job)."""
        rows = await self._rows("record_outcomes", outcome_params(outcomes), _JobId)
        return {row.id for row in rows}

    async def deregister_worker(self, worker_id: str) -> None:
        """Mark the worker stopped (it keeps its row for the dashboard until pruned)."""
        await self._execute("deregister_worker", {"worker_id": worker_id})
