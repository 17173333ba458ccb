"""The one place tests fabricate state: settings for a test's own schema and Redis prefix,
and rows in any state, written straight into the test schema.

States that take a real system a while to reach (dead after three attempts, running on a
worker gone silent, a lease long expired) are written here with SQL. Tests are not the
product, so this SQL does not go through the store; it lives in this module only, so a
column added or renamed by a migration is fixed in one place. Every function takes a
connection whose search_path is the test schema (the `db` fixture).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from uuid import UUID

import psycopg

from conveyor.config import Settings, load_settings
from conveyor.ids import uuid7
from conveyor.vocabulary import (
    COMPLETED,
    DEAD,
    DISPATCHED,
    LOG_COMPLETED,
    LOG_DEAD,
    LOG_FAILED,
    QUEUED,
    RUNNING,
)

Db = psycopg.Connection[Any]

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Short intervals so tests wait for outcomes in tenths of a second, not the defaults' seconds.
FAST = {
    # Few connections per process: two test files run side by side under PostgreSQL's
    # default 100 connections, and their worker processes each open a pool.
    "database.pool_size": 4,
    "queuer.poll_interval": 0.1,
    "worker.heartbeat_interval": 0.2,
    "worker.dead_after": 2.0,
    "worker.fetch_timeout": 0.2,
    "worker.shutdown_grace": 5.0,
    "maintenance.rescue_interval": 0.2,
    "maintenance.reconcile_interval": 0.5,
    "maintenance.reconcile_grace": 0.5,
    "retry.base": 0.05,
    "retry.cap": 0.2,
}


# -- settings ------------------------------------------------------------------------------


def new_namespace() -> tuple[str, str]:
    """A fresh (schema, Redis key prefix) pair, so tests never see each other's state."""
    tag = uuid.uuid4().hex[:12]
    return f"t_{tag}", f"t_{tag}:"


def make_settings(
    db_url: str,
    schema: str,
    prefix: str,
    redis_url: str = REDIS_URL,
    *,
    fast: bool = True,
    **overrides: Any,
) -> Settings:
    """Settings for one test: its schema and key prefix, fast intervals (unless not
    `fast`), then `overrides` (dotted keys, as `load_settings` takes them). The
    environment is never read."""
    values = {
        "database.url": db_url,
        "database.schema": schema,
        "redis.url": redis_url,
        "redis.key_prefix": prefix,
        **(FAST if fast else {}),
        # httpx's ASGI transport sends "Host: testserver"; the web refuses unknown names.
        "web.allowed_hosts": ["testserver"],
        **overrides,
    }
    return load_settings(None, env={}, overrides=values)


# -- rows ----------------------------------------------------------------------------------

_JOB_COLUMNS = frozenset(
    {
        "id",
        "queue_name",
        "tenant",
        "task",
        "status",
        "priority",
        "payload",
        "attempt",
        "max_attempts",
        "lease_token",
        "run_at",
        "dispatched_at",
        "started",
        "lease_expires_at",
        "completed",
        "failed",
        "worker_id",
        "last_error",
        "idempotency_key",
        "timeout_seconds",
        "lease_seconds",
        "cancel_requested",
        "created",
        "updated",
        "trace_context",
        "unique_key",
        "expires_at",
        "snoozes",
        "result",
        "result_error",
        "awaited",
        "limit_key",
        "limited",
        "rate_scopes",
        "progress",
        "progress_message",
        "progress_at",
        "tags",
        "meta",
        "pending_parents",
        "on_parent_failure",
        "parent_results",
        "has_dependents",
    }
)


def add_queue(db: Db, name: str, *, active: bool = True) -> None:
    """A `job_queues` row (enqueue creates it; fabricated jobs need it for stats and pauses)."""
    db.execute(
        b"INSERT INTO job_queues (name, is_active) VALUES (%s, %s)"
        b" ON CONFLICT (name) DO UPDATE SET is_active = excluded.is_active",
        (name, active),
    )


def add_job(
    db: Db,
    queue: str = "q",
    *,
    task: str = "t",
    status: str = QUEUED,
    priority: int = 100,
    attempt: int = 0,
    max_attempts: int = 3,
    payload: Any = None,
    run_in: float = 0.0,
    age: float = 0.0,
    worker: str | None = None,
    error: str | None = None,
    traceback: str | None = None,
    cancel_requested: bool = False,
    queue_row: bool = True,
    **columns: Any,
) -> UUID:
    """Insert one job in any state and return its id.

    Created `age` seconds ago and due `run_in` seconds after that. The timestamps a real
    job in `status` would carry are filled in (dispatched_at, started, a 30 s lease,
    completed, failed when dead or given an `error`). With `traceback`, the job_logs row of
    its last attempt is written too. Any other column, or one of those, can be set
    exactly through `columns` (`lease_token=3`, `updated="2000-01-01T00:00:00Z"`, ...).
    """
    unknown = set(columns) - _JOB_COLUMNS
    if unknown:
        raise TypeError(f"jobs has no column(s) {sorted(unknown)}")
    if queue_row:
        db.execute(b"INSERT INTO job_queues (name) VALUES (%s) ON CONFLICT DO NOTHING", (queue,))
    job_id = columns.pop("id", None) or uuid7()
    now = "now()"
    values: dict[str, str] = {
        "id": "%(id)s",
        "queue_name": "%(queue)s",
        "task": "%(task)s",
        "status": "%(status)s",
        "priority": "%(priority)s",
        "payload": "%(payload)s",
        "attempt": "%(attempt)s",
        "max_attempts": "%(max_attempts)s",
        "run_at": "now() - %(age)s * interval '1 second' + %(run_in)s * interval '1 second'",
        "created": "now() - %(age)s * interval '1 second'",
        "updated": now,
        "dispatched_at": now if status == DISPATCHED else "NULL",
        "started": now if status in (RUNNING, COMPLETED) else "NULL",
        "lease_expires_at": "now() + interval '30 seconds'" if status == RUNNING else "NULL",
        "completed": now if status == COMPLETED else "NULL",
        "failed": now if status == DEAD or error is not None else "NULL",
        "worker_id": "%(worker)s",
        "last_error": "%(error)s",
        "cancel_requested": "%(cancel)s",
    }
    params: dict[str, Any] = {
        "id": job_id,
        "queue": queue,
        "task": task,
        "status": status,
        "priority": priority,
        "payload": json.dumps(payload if payload is not None else {"n": 1}),
        "attempt": attempt,
        "max_attempts": max_attempts,
        "age": age,
        "run_in": run_in,
        "worker": worker,
        "error": error,
        "cancel": cancel_requested,
    }
    for name, value in columns.items():
        values[name] = f"%(column_{name})s"
        params[f"column_{name}"] = value
    sql = f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join(values.values())})"
    db.execute(sql.encode(), params)
    if traceback is not None:
        add_log(
            db,
            job_id,
            queue=queue,
            task=task,
            status=LOG_DEAD if status == DEAD else LOG_FAILED,
            attempt=attempt,
            message=error,
            traceback=traceback,
            duration=1.5,
        )
    return job_id


def add_jobs(db: Db, queue: str, count: int, *, task: str = "t") -> None:
    """`count` queued jobs in one statement, created a millisecond apart (newest first)."""
    add_queue(db, queue)
    db.execute(
        b"INSERT INTO jobs (id, queue_name, task, payload, created)"
        b" SELECT gen_random_uuid(), %s, %s, jsonb_build_object('n', n),"
        b" now() - n * interval '1 millisecond' FROM generate_series(1, %s) AS n",
        (queue, task, count),
    )


def add_log(
    db: Db,
    job_id: UUID,
    *,
    queue: str = "q",
    task: str = "t",
    status: str = LOG_COMPLETED,
    attempt: int = 1,
    ago: float = 0.0,
    message: str | None = None,
    traceback: str | None = None,
    duration: float = 0.5,
    worker: str = "w-1",
) -> None:
    """One attempt's `job_logs` row, finished `ago` seconds ago after `duration` seconds."""
    db.execute(
        b"INSERT INTO job_logs (job_id, queue_name, task, status, attempt_number, log_message,"
        b" traceback, worker_id, started, finished, duration) VALUES (%(job)s, %(queue)s,"
        b" %(task)s, %(status)s, %(attempt)s, %(message)s, %(traceback)s, %(worker)s,"
        b" now() - (%(ago)s + %(duration)s) * interval '1 second',"
        b" now() - %(ago)s * interval '1 second', %(duration)s * interval '1 second')",
        {
            "job": job_id,
            "queue": queue,
            "task": task,
            "status": status,
            "attempt": attempt,
            "message": message,
            "traceback": traceback,
            "worker": worker,
            "ago": ago,
            "duration": duration,
        },
    )


def add_worker(
    db: Db,
    worker_id: str,
    queues: list[str],
    *,
    host: str = "host-a",
    pid: int = 42,
    concurrency: int = 5,
    silent_for: float = 0.0,
    stopped: bool = False,
    in_flight: int = 0,
) -> None:
    """A `workers` row whose last heartbeat was `silent_for` seconds ago."""
    db.execute(
        b"INSERT INTO workers (id, host, pid, queues, concurrency, last_heartbeat,"
        b" jobs_in_flight, stopped) VALUES (%s, %s, %s, %s, %s,"
        b" now() - %s * interval '1 second', %s, CASE WHEN %s THEN now() END)",
        (worker_id, host, pid, queues, concurrency, silent_for, in_flight, stopped),
    )


def set_worker_health(
    db: Db,
    worker_id: str,
    *,
    up_for: float = 3720.0,
    rss_bytes: int | None = 123 << 20,
    processed: int = 40,
    failed: int = 4,
    busy_seconds: float = 0.492,
    postgres_only: bool = False,
    breakers_open: tuple[str, ...] = (),
) -> None:
    """What a worker's heartbeats report about it (add_worker's row; started `up_for`
    seconds ago)."""
    db.execute(
        b"UPDATE workers SET started = now() - %s * interval '1 second', rss_bytes = %s,"
        b" jobs_processed = %s, jobs_failed = %s, busy_seconds = %s, postgres_only = %s,"
        b" breakers_open = %s WHERE id = %s",
        (
            up_for,
            rss_bytes,
            processed,
            failed,
            busy_seconds,
            postgres_only,
            list(breakers_open),
            worker_id,
        ),
    )


def add_history(
    db: Db,
    minutes_ago: int,
    queue: str = "q",
    *,
    lane: str = "normal",
    hourly: bool = False,
    **figures: Any,
) -> None:
    """One metrics history row for the minute (or, `hourly`, the hour) that began
    `minutes_ago` whole minutes (hours) before the current one, with any `figures`
    (completed=3, run_p95=1.5, ...); marks the minute rollup as done up to now."""
    table, unit = ("metrics_hours", "hour") if hourly else ("metrics_minutes", "minute")
    # "The current minute" is the one of this connection's first call: a test that adds
    # rows in a loop must not see the clock cross a minute between two of them (two rows
    # would then name the same minute).
    db.execute(
        b"SELECT set_config('conveyor_test.history_anchor', coalesce(nullif("
        b"current_setting('conveyor_test.history_anchor', true), ''),"
        b" date_trunc('minute', now())::text), false)"
    )
    anchor = "current_setting('conveyor_test.history_anchor')::timestamptz"
    names = ", ".join(figures)
    slots = ", ".join(f"%(figure_{name})s" for name in figures)
    params = {f"figure_{name}": value for name, value in figures.items()}
    params.update({"ago": minutes_ago, "queue": queue, "lane": lane})
    sql = (
        f"INSERT INTO {table} (bucket, queue_name, lane{', ' if figures else ''}{names})"
        f" VALUES (date_trunc('{unit}', {anchor}) - %(ago)s * interval '1 {unit}', %(queue)s,"
        f" %(lane)s{', ' if figures else ''}{slots})"
    )
    db.execute(sql.encode(), params)
    db.execute(
        b"INSERT INTO metrics_rollup_state (rolled_through)"
        b" VALUES (current_setting('conveyor_test.history_anchor')::timestamptz)"
        b" ON CONFLICT (singleton) DO UPDATE SET rolled_through = excluded.rolled_through"
    )


def add_metrics_minute(
    db: Db, queue: str, *, minutes_ago: int = 1, lane: str = "normal", **figures: float | None
) -> None:
    """A `metrics_minutes` row for the minute that started `minutes_ago` whole minutes before
    the current one (1: the last one the rollup wrote); `figures` are its other columns."""
    add_history(db, minutes_ago, queue, lane=lane, **figures)


def add_schedule(
    db: Db,
    name: str,
    *,
    cron: str = "* * * * *",
    task: str = "tick",
    queue: str = "cron",
    timezone: str = "UTC",
    payload: Any = None,
    misfire: str = "skip",
    backfill_limit: int = 10,
    paused: bool = False,
    source: str = "code",
    next_run_at: str | None = "date_trunc('minute', now())",
) -> None:
    """A `schedules` row whose next tick is the SQL expression `next_run_at` (None: never
    computed, as a new definition), e.g. "date_trunc('minute', now()) - interval '5 min'"."""
    when = next_run_at or "NULL"
    db.execute(
        b"INSERT INTO schedules (name, task, cron, timezone, payload, queue_name, priority,"
        b" max_attempts, misfire, backfill_limit, source, paused, next_run_at) VALUES"
        b" (%s, %s, %s, %s, %s, %s, 100, 3, %s, %s, %s, %s, " + when.encode() + b")",
        (name, task, cron, timezone, json.dumps(payload), queue, misfire, backfill_limit, source,
         paused),
    )  # fmt: skip


def add_batch(
    db: Db,
    jobs: list[UUID] | None = None,
    *,
    description: str | None = "a batch",
    sealed: bool = True,
    **counts: int,
) -> UUID:
    """A `batches` row holding `jobs` (their batch_id is set), sealed unless told not to;
    `counts` (total, pending, succeeded, failed) default to `jobs` all pending."""
    batch_id = uuid7()
    members = jobs or []
    figures = {"total": len(members), "pending": len(members), "succeeded": 0, "failed": 0}
    figures.update(counts)
    db.execute(
        b"INSERT INTO batches (id, description, sealed, total, pending, succeeded, failed)"
        b" VALUES (%s, %s, CASE WHEN %s THEN now() END, %s, %s, %s, %s)",
        (batch_id, description, sealed, figures["total"], figures["pending"],
         figures["succeeded"], figures["failed"]),
    )  # fmt: skip
    db.execute(b"UPDATE jobs SET batch_id = %s WHERE id = ANY(%s)", (batch_id, members))
    return batch_id


def lock_waiters(db: Db, schema: str) -> int:
    """Backends waiting for a row of this schema's jobs table that another transaction
    holds (the first waiter holds the row's tuple lock while it waits for that one)."""
    row = db.execute(
        b"SELECT count(*) FROM pg_locks t JOIN pg_locks w ON w.pid = t.pid"
        b" WHERE t.locktype = 'tuple' AND t.granted AND t.relation = %s::regclass"
        b" AND NOT w.granted",
        (f'"{schema}".jobs',),
    ).fetchone()
    return int(row[0]) if row else 0


def job_edges(db: Db, child: UUID) -> list[tuple[UUID, bool]]:
    """The child's `job_dependencies` rows in position order: (parent id, resolved)."""
    rows = db.execute(
        b"SELECT parent_id, resolved FROM job_dependencies WHERE child_id = %s ORDER BY position",
        (child,),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]
