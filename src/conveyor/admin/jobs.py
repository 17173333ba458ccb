"""Looking at jobs: what runs next, keyset listings, one job in full, the audit trail."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from conveyor.admin.base import (
    AdminBase,
    check_count,
    check_job_id,
    check_lane,
    check_optional_queue,
    check_queue,
    check_seconds,
    check_tenant,
    check_text,
)
from conveyor.admin.errors import AdminError, AdminNotFound
from conveyor.admin.explain import WaitFacts, why_waiting
from conveyor.admin.models import Attempt, AuditEntry, JobDetail, JobLink, JobSummary, Page
from conveyor.errors import RedisUnavailable
from conveyor.labels import check_meta, check_tags
from conveyor.store.admin_reads import JobLinkRow, JobPage
from conveyor.vocabulary import (
    CANCELLED,
    COMPLETED,
    DEAD,
    DISPATCHED,
    EXPIRED,
    HIGH,
    HIGH_PRIORITY_MAX,
    LANES,
    LOW,
    NORMAL,
    NORMAL_PRIORITY_MAX,
    QUEUED,
    RETRY_SCHEDULED,
    RUNNING,
    STATUSES,
    WAITING,
    LaneName,
)

log = logging.getLogger("conveyor.admin")
AT_REST = (QUEUED, COMPLETED, DEAD, CANCELLED, EXPIRED)  # the statuses jobs_admin_list_idx holds
IN_FLIGHT = (DISPATCHED, RUNNING, WAITING)  # each listed from its own partial index
LIST_STATUSES = (*STATUSES, RETRY_SCHEDULED)
AHEAD_CAP = 100_000
LINKS_SHOWN = 200  # parents, and children, of a job in its detail (a chord may have more)
# Characters of a result's JSON shown in full; a longer one is shown truncated.
RESULT_CAP = 65_536
LIST_TIMEOUT_MS = 20_000  # a payload search over a huge queue gives up rather than hog
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
PRIORITY_RANGE: dict[LaneName | None, tuple[int, int]] = {
    None: (INT_MIN, INT_MAX),
    HIGH: (INT_MIN, HIGH_PRIORITY_MAX),
    NORMAL: (HIGH_PRIORITY_MAX + 1, NORMAL_PRIORITY_MAX),
    LOW: (NORMAL_PRIORITY_MAX + 1, INT_MAX),
}


def encode_cursor(created: datetime, job_id: UUID) -> str:
    raw = f"{created.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, job_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment, UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, AttributeError, TypeError):
        raise AdminError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _status_filter(status: str | None) -> tuple[list[str], list[str], bool | None]:
    """(statuses read from the listing index, in-flight statuses, retry flag for queued)."""
    if status is None:
        return list(AT_REST), list(IN_FLIGHT), None
    if status not in LIST_STATUSES:
        raise AdminError(f"status must be one of {', '.join(LIST_STATUSES)}, not {status!r}")
    if status in IN_FLIGHT:
        return [], [status], None
    if status == RETRY_SCHEDULED:
        return [QUEUED], [], True
    return [status], [], False if status == QUEUED else None


def _labels(
    tags: Sequence[str] | None, meta: Mapping[str, Any] | None
) -> tuple[list[str] | None, str | None]:
    """The tags and the meta (as JSON text) to search for; None for an absent or empty
    filter. Checked like an enqueue's, so a tag no job can carry is an error, not an
    empty page."""
    try:
        wanted_tags = check_tags(tags, "tag filter") if tags is not None else None
        wanted_meta = check_meta(meta, "meta filter") if meta is not None else None
    except ValueError as error:
        raise AdminError(str(error)) from None
    return (
        wanted_tags or None,
        orjson.dumps(wanted_meta).decode() if wanted_meta else None,
    )


class JobsMixin(AdminBase):
    async def peek(self, queue: str, n: int = 20, lane: str | None = None) -> list[JobSummary]:
        """The next `n` jobs of `queue` in the order they would run: dispatched jobs in
        Redis pop order (high, normal, low lane), then ready jobs by priority and run_at."""
        queue = check_queue(queue)
        n = check_count(n, "n")
        lane_name = check_lane(lane)
        ids = await self._lane_heads(queue, n, lane_name)
        low, high = PRIORITY_RANGE[lane_name]
        async with self.session() as store:
            await self.require_queue(store, queue)
            rows = await store.peek_jobs(queue, ids, n, low, high, self.scope)
        return [JobSummary.from_row(row) for row in rows]

    async def _lane_heads(self, queue: str, n: int, lane: LaneName | None) -> list[UUID]:
        """Up to `n` ids from the pop end of each lane, in pop order; [] if Redis is down."""
        try:
            found = await self.lanes.peek(queue, [lane] if lane else LANES, n)
        except RedisUnavailable as error:
            log.warning("peek: Redis unavailable (%s); showing PostgreSQL's order", error)
            return []
        ids: list[UUID] = []
        for item in found:
            try:
                ids.append(UUID(item))
            except ValueError:
                continue
        return ids

    async def list_jobs(
        self,
        queue: str | None = None,
        status: str | None = None,
        lane: str | None = None,
        min_age_seconds: float | None = None,
        max_age_seconds: float | None = None,
        text: str | None = None,
        after: str | None = None,
        limit: int = 50,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Page[JobSummary]:
        """Jobs newest first, one keyset page at a time (pass `next_cursor` as `after`).
        `status` takes the stored statuses and retry_scheduled; `queued` means queued
        jobs without failed attempts. `text` searches inside the payload; `tenant` keeps
        one tenant's jobs (within the caller's scope: another tenant gives an empty page);
        `tags` keeps jobs carrying every one of them, `meta` jobs holding every pair (an
        indexed search: docs/progress.md)."""
        queue = check_optional_queue(queue)
        scope = self.scope if tenant is None else self.scope.narrowed_to(check_tenant(tenant))
        rest, live, retry = _status_filter(status)
        lane_name = check_lane(lane)
        min_age = check_seconds(min_age_seconds, "min_age_seconds")
        max_age = check_seconds(max_age_seconds, "max_age_seconds")
        if min_age is not None and max_age is not None and min_age > max_age:
            raise AdminError("min_age_seconds must not be larger than max_age_seconds")
        search = check_text(text, "text")
        limit = check_count(limit, "limit")
        wanted_tags, wanted_meta = _labels(tags, meta)
        before: tuple[datetime | str, UUID] = (
            decode_cursor(after) if after is not None else ("infinity", UUID(int=0))
        )
        low, high = PRIORITY_RANGE[lane_name]
        page = JobPage(
            queue=queue,
            retry=retry,
            before_created=before[0],
            before_id=before[1],
            min_age=min_age,
            max_age=max_age,
            min_priority=low,
            max_priority=high,
            text=like_pattern(search) if search else None,
            limit=limit + 1,  # one more than asked: is there a next page?
            scope=scope,
        )
        async with self.transaction() as tx:
            await tx.limit_statement_time(LIST_TIMEOUT_MS)
            if queue is not None:
                await self.require_queue(tx, queue)
            if wanted_tags is not None or wanted_meta is not None:
                rows = await tx.search_jobs(wanted_tags, wanted_meta, rest + live, page)
            else:
                rows = await tx.list_jobs(rest, live, page)
        items = [JobSummary.from_row(row) for row in rows]
        more = len(items) > limit
        items = items[:limit]
        cursor = encode_cursor(items[-1].created, items[-1].id) if more and items else None
        return Page(items=items, next_cursor=cursor)

    async def job_detail(self, job_id: UUID | str) -> JobDetail:
        """The job with its payload, every attempt from job_logs, and why it is waiting."""
        identifier = check_job_id(job_id)
        async with self.session() as store:
            row = await store.job_detail(
                identifier, AHEAD_CAP, self.settings.worker.dead_after, self.scope, RESULT_CAP
            )
            if row is None:
                raise AdminNotFound(f"no job with id {identifier}")
            logs = await store.job_attempts(identifier)
            links = []
            if row["pending_parents"] is not None or row["has_dependents"]:
                links = await store.job_graph(identifier, self.scope, LINKS_SHOWN)
        in_redis, redis_ahead = None, None
        own_only = self.scope.tenants is not None
        if row["status"] == DISPATCHED:
            in_redis, redis_ahead = await self._redis_place(row)
            if own_only:  # a position in the lanes counts every tenant's jobs
                redis_ahead = None
        facts = WaitFacts(
            status=row["status"],
            queue=row["queue_name"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
            now=row["db_now"],
            dispatched_at=row["dispatched_at"],
            last_error=row["last_error"],
            queue_paused=row["queue_paused"],
            paused_at=row["queue_paused_at"],
            ready_ahead=row["ready_ahead"],
            dispatched_ahead=row["dispatched_ahead"],
            ahead_cap=AHEAD_CAP,
            live_workers=row["live_workers"],
            redis_ahead=redis_ahead,
            in_redis=in_redis,
            own_only=own_only,
            pending_parents=row["pending_parents"],
            on_parent_failure=row["on_parent_failure"],
        )
        return JobDetail(
            **JobSummary.fields_from_row(row),
            payload=row["payload"],
            idempotency_key=row["idempotency_key"],
            unique_key=row["unique_key"],
            result=row["result"] if row["result_head"] is None else row["result_head"],
            result_truncated=row["result_head"] is not None,
            result_error=row["result_error"],
            tags=row["tags"] or [],
            meta=row["meta"] or {},
            lease_expires_at=row["lease_expires_at"],
            timeout_seconds=row["timeout_seconds"],
            attempts=[
                Attempt(
                    status=log_row.status,
                    attempt_number=log_row.attempt_number,
                    message=log_row.log_message,
                    traceback=log_row.traceback,
                    worker_id=log_row.worker_id,
                    started=log_row.started,
                    finished=log_row.finished,
                    duration_seconds=log_row.duration_seconds,
                )
                for log_row in logs
            ],
            why_waiting=why_waiting(facts),
            parents=[_link(link) for link in links if link.relation == "parent"],
            children=[_link(link) for link in links if link.relation == "child"],
            pending_parents=row["pending_parents"],
            on_parent_failure=row["on_parent_failure"],
        )

    async def _redis_place(self, row: dict[str, Any]) -> tuple[bool | None, int | None]:
        """(is the id in its lane, how many ids pop before it); (None, None) if unknown."""
        lane: LaneName = JobSummary.fields_from_row(row)["lane"]
        try:
            ahead = await self.lanes.ahead_of(row["queue_name"], lane, str(row["id"]))
        except RedisUnavailable:
            return None, None
        return (False, None) if ahead is None else (True, ahead)

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The newest operator actions first (to a scoped caller, only those about its
        tenants and queues: see admin_audit_log)."""
        limit = check_count(limit, "limit")
        rows = await self.read(self.store.audit_log(limit, self.scope))
        return [AuditEntry(**vars(row)) for row in rows]  # the row has the model's fields


def _link(row: JobLinkRow) -> JobLink:
    retrying = row.status == QUEUED and (row.attempt or 0) > 0
    return JobLink(
        id=row.id,
        task=row.task,
        status=RETRY_SCHEDULED if retrying else row.status,
        queue=row.queue_name,
    )
