"""The producer side: enqueue (one, many, inside the caller's transaction), look up, cancel.

Enqueue validates everything before it touches PostgreSQL, writes all rows with one
statement, and returns only after COMMIT (or, with `connection=`, leaves the commit to
the caller: the job then exists if and only if the caller's transaction commits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict
from uuid import UUID

import orjson

from conveyor import metrics
from conveyor.dedup import Dedup, check_options
from conveyor.encryption import PayloadCipher
from conveyor.errors import EnqueueError, UnknownTaskError
from conveyor.ids import uuid7
from conveyor.labels import MetaValue, check_meta, check_tags
from conveyor.limits import check_limit_key
from conveyor.tasks import QUEUE_NAME, Task, check_priority, check_queue_name
from conveyor.vocabulary import ON_FAILURE_CANCEL, ON_PARENT_FAILURE

# More parents than this for one job is a mistake (a chord of more parents: group them).
MAX_PARENTS = 10_000


@dataclass(frozen=True)
class EnqueueOptions:
    priority: int | None = None
    run_at: datetime | None = None
    delay: float | timedelta | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    queue: str | None = None
    tenant: str | None = None
    # One mode (or None) per payload, checked by `conveyor.dedup.check_modes`.
    dedup: tuple[Dedup | None, ...] | None = None
    # Not started by then, the job ends expired (see docs/scheduling.md, "Expiry").
    expires_in: float | timedelta | None = None
    deadline: datetime | None = None
    # The job's share of global limits (docs/scheduling.md, "Rate and concurrency limits").
    limit_key: str | None = None
    # Set by a batch's own `enqueue` (conveyor.batches), never by a caller: a job joins a
    # batch only through the statement that counts it in.
    batch_id: UUID | None = None
    # Labels to find the job by (docs/progress.md): stored only when given.
    tags: Sequence[str] | None = None
    meta: Mapping[str, MetaValue] | None = None
    # Jobs that must end before this one is queued, and what one that did not complete
    # does to it (docs/workflows.md).
    depends_on: Sequence[UUID | str] | None = None
    on_parent_failure: str | None = None


class EnqueueArgs(TypedDict, total=False):
    """The keyword arguments every enqueue form takes (`enqueue`, `enqueue_many`, their
    async and `_result(s)` forms, `Task.enqueue`), declared once; see `EnqueueOptions`."""

    priority: int | None
    run_at: datetime | None
    delay: float | timedelta | None
    max_attempts: int | None
    queue: str | None
    tenant: str | None
    expires_in: float | timedelta | None
    deadline: datetime | None
    limit_key: str | None
    tags: Sequence[str] | None
    meta: Mapping[str, MetaValue] | None
    depends_on: Sequence[UUID | str] | None
    on_parent_failure: str | None


ENQUEUE_ARGS = frozenset(EnqueueArgs.__annotations__)


def enqueue_options(
    args: EnqueueArgs,
    *,
    dedup: tuple[Dedup | None, ...] | None = None,
    idempotency_key: str | None = None,
) -> EnqueueOptions:
    """The options of one enqueue call; an unknown keyword is a `TypeError`, as it would
    be for a function that spells its keywords out."""
    unknown = sorted(set(args) - ENQUEUE_ARGS)
    if unknown:
        raise TypeError(f"enqueue got unexpected keyword arguments: {', '.join(unknown)}")
    return EnqueueOptions(idempotency_key=idempotency_key, dedup=dedup, **args)


def check_tenant_name(tenant: object) -> str:
    """A tenant is named like a queue: 1-100 letters, digits, '_', '.', '-', in parts
    separated by single ':' (the jobs_tenant_name CHECK says the same)."""
    if not isinstance(tenant, str) or not QUEUE_NAME.match(tenant) or len(tenant) > 100:
        raise EnqueueError(
            f"tenant {tenant!r} must be 1-100 letters, digits, '_', '.', '-', "
            "in parts separated by single ':'"
        )
    return tenant


@dataclass
class InsertBatch:
    """The rows for the `insert_jobs` statement, in the caller's order."""

    ids: list[UUID]
    keys: list[str | None]
    records: list[dict[str, Any]]
    # Every job the batch's jobs depend on (insert_jobs reports unknown ones through it).
    parents: list[UUID] = field(default_factory=list)

    @property
    def jobs(self) -> str:
        """The rows as the one JSON array `insert_jobs` reads."""
        return orjson.dumps(self.records).decode()


def resolve_task(tasks: dict[str, Task], task_or_name: Task | str) -> Task:
    if isinstance(task_or_name, Task):
        registered = tasks.get(task_or_name.name)
        if registered is None:
            raise UnknownTaskError(task_or_name.name, list(tasks))
        return registered
    if not isinstance(task_or_name, str):
        raise EnqueueError(f"expected a task or a task name, not {type(task_or_name).__name__}")
    try:
        return tasks[task_or_name]
    except KeyError:
        raise UnknownTaskError(task_or_name, list(tasks)) from None


def build_batch(
    task: Task,
    payloads: Iterable[Any],
    options: EnqueueOptions,
    payload_limit: int,
    cipher: PayloadCipher | None = None,
    trace_context: dict[str, str] | None = None,
) -> InsertBatch:
    """Validate every payload and option first, so a bad one means no row at all."""
    queue = check_queue_name(options.queue) if options.queue is not None else task.queue
    tenant = check_tenant_name(options.tenant) if options.tenant is not None else None
    priority = check_priority(options.priority if options.priority is not None else task.priority)
    max_attempts = options.max_attempts if options.max_attempts is not None else task.max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise EnqueueError(f"max_attempts must be a positive integer, not {max_attempts!r}")
    if options.run_at is not None and options.delay is not None:
        raise EnqueueError("give run_at or delay, not both")
    if options.run_at is not None and options.run_at.tzinfo is None:
        raise EnqueueError("run_at must be timezone-aware (naive datetimes are ambiguous)")
    delay = _delay_seconds(options.delay)
    limit_key = _limit_key(options.limit_key)
    labels = _labels(options.tags, options.meta)
    parents = check_parents(options.depends_on)
    rule = _parent_failure_rule(options.on_parent_failure, parents)
    if parents and options.dedup is not None:
        raise EnqueueError("depends_on cannot be combined with dedup")
    own = options.expires_in is not None or options.deadline is not None
    expiry = _expiry(options.expires_in if own else task.expires_in, options.deadline)
    payloads = list(payloads)
    count = len(payloads)
    if options.idempotency_key is not None and count > 1:
        raise EnqueueError("one idempotency_key cannot name several jobs")
    if options.dedup is not None:
        check_options(options, count)
    # Ids first: an encrypted field is sealed to its job's id.
    ids = [uuid7() for _ in range(count)]
    encoded = [
        task.encode_payload(payload, payload_limit, _sealer(cipher, job_id))
        for payload, job_id in zip(payloads, ids, strict=True)
    ]
    common = {
        "queue_name": queue,
        "task": task.name,
        "priority": priority,
        "max_attempts": max_attempts,
        "run_at": options.run_at,
        "delay_seconds": delay,
        "idempotency_key": options.idempotency_key,
        "timeout_seconds": task.timeout,
        "lease_seconds": task.lease,
    }
    if tenant is not None:  # a missing key reads as NULL: untenanted batches stay as small
        common["tenant"] = tenant
    if trace_context is not None:  # the enqueue's span (see conveyor.tracing); same reason
        common["trace_context"] = trace_context
    common.update(expiry)  # same reason
    if limit_key is not None:  # same reason
        common["limit_key"] = limit_key
    if options.batch_id is not None:  # same reason
        common["batch_id"] = options.batch_id
    common.update(labels)  # same reason
    if parents:  # same reason
        common["depends_on"] = parents
        common["on_parent_failure"] = rule
    # Payloads are already JSON text (their size was checked): embed, do not re-encode.
    records = [
        {"id": job_id, "payload": orjson.Fragment(payload), **common}
        for job_id, payload in zip(ids, encoded, strict=True)
    ]
    return InsertBatch(ids, [options.idempotency_key] * count, records, parents)


def check_parents(depends_on: Sequence[UUID | str] | None) -> list[UUID]:
    """The parent ids of `depends_on`, checked: ids (UUIDs or their text), each once."""
    if depends_on is None:
        return []
    if isinstance(depends_on, str | UUID) or not isinstance(depends_on, Sequence):
        raise EnqueueError(f"depends_on must be a list of job ids, not {type(depends_on).__name__}")
    if len(depends_on) > MAX_PARENTS:
        raise EnqueueError(f"depends_on names {len(depends_on)} jobs, over {MAX_PARENTS}")
    parents = [_job_id(item) for item in depends_on]
    if len(set(parents)) < len(parents):
        seen: set[UUID] = set()
        for parent in parents:
            if parent in seen:
                raise EnqueueError(f"depends_on names job {parent} twice")
            seen.add(parent)
    return parents


def _job_id(item: object) -> UUID:
    if isinstance(item, UUID):
        return item
    try:
        if isinstance(item, str):
            return UUID(item)
    except ValueError:
        pass
    raise EnqueueError(f"depends_on: {item!r} is not a job id")


def _parent_failure_rule(rule: str | None, parents: list[UUID]) -> str:
    if rule is None:
        return ON_FAILURE_CANCEL
    if rule not in ON_PARENT_FAILURE:
        raise EnqueueError(
            f"on_parent_failure must be one of {', '.join(ON_PARENT_FAILURE)}, not {rule!r}"
        )
    if not parents:
        raise EnqueueError("on_parent_failure applies only to a job with depends_on")
    return rule


def _limit_key(key: str | None) -> str | None:
    if key is None:
        return None
    try:
        return check_limit_key(key)
    except ValueError as error:
        raise EnqueueError(str(error)) from None


def _labels(tags: Sequence[str] | None, meta: Mapping[str, MetaValue] | None) -> dict[str, Any]:
    """The `insert_jobs` fields for tags and meta; none for a job without them (and
    none for an empty list or object: NULL keeps the job out of the GIN indexes)."""
    fields: dict[str, Any] = {}
    try:
        if tags is not None and (checked_tags := check_tags(tags)):
            fields["tags"] = checked_tags
        if meta is not None and (checked_meta := check_meta(meta)):
            fields["meta"] = checked_meta
    except ValueError as error:
        raise EnqueueError(str(error)) from None
    return fields


def _sealer(cipher: PayloadCipher | None, job_id: UUID) -> Callable[[Any], Any] | None:
    if cipher is None or not cipher.enabled:
        return None
    return lambda payload: cipher.encrypt(payload, job_id)


def _delay_seconds(delay: float | timedelta | None) -> float | None:
    if delay is None:
        return None
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise EnqueueError(f"delay must be a non-negative number of seconds, not {delay!r}")
    return float(seconds)


# Beyond this PostgreSQL's timestamp arithmetic overflows; no deadline is that far anyway.
MAX_EXPIRES_IN = 100 * 366 * 86400.0


def _expiry(expires_in: float | timedelta | None, deadline: datetime | None) -> dict[str, Any]:
    """The `insert_jobs` fields for a job's deadline: `expires_at` for an absolute one,
    `expires_in` (seconds, counted from PostgreSQL's clock) for a relative one."""
    if expires_in is not None and deadline is not None:
        raise EnqueueError("give expires_in or deadline, not both")
    if deadline is not None:
        if not isinstance(deadline, datetime) or deadline.tzinfo is None:
            raise EnqueueError(
                f"deadline must be a timezone-aware datetime (naive ones are ambiguous), "
                f"not {deadline!r}"
            )
        return {"expires_at": deadline}
    if expires_in is None:
        return {}
    seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds <= MAX_EXPIRES_IN
    ):
        raise EnqueueError(
            f"expires_in must be a positive number of seconds up to {MAX_EXPIRES_IN:.0f} "
            f"(a hundred years), not {expires_in!r}"
        )
    return {"expires_in": float(seconds)}


def counted(batch: InsertBatch, ids: list[UUID]) -> list[UUID]:
    """Count written jobs (idempotent repeats that found an existing job are not new)."""
    fresh = len(set(ids) & set(batch.ids))
    if fresh:
        first = batch.records[0]
        metrics.ENQUEUED.labels(first["queue_name"], first["task"]).inc(fresh)
    return ids
