"""Prometheus metrics, named as in the runbook (jobs_*_total, queue_length, ...).

A supervised worker runs several processes; prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by the supervisor before it spawns) makes the
supervisor's /metrics report the totals of all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
JOB_LABELS = ("queue", "task")
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)

LOGIN_ATTEMPTS = Counter(
    "login_attempts", "Dashboard logins by outcome: success, failure, throttled.", ("outcome",)
)
ENQUEUED = Counter("jobs_enqueued", "Jobs committed by enqueue.", JOB_LABELS)
DISPATCHED = Counter("jobs_dispatched", "Jobs moved from PostgreSQL into Redis.", ("queue",))
LOW_LANE_AGED = Counter(
    "jobs_low_lane_aged",
    "Low-priority jobs served from the normal lane after waiting past their aging time.",
    ("queue",),
)
COMPLETED = Counter("jobs_completed", "Attempts that completed.", JOB_LABELS)
FAILED = Counter("jobs_failed", "Attempts that raised, timed out or were lost.", JOB_LABELS)
RETRIED = Counter("jobs_retried", "Failed attempts scheduled to run again.", JOB_LABELS)
DEAD = Counter("jobs_dead", "Jobs moved to the dead-letter queue.", JOB_LABELS)
CANCELLED = Counter("jobs_cancelled", "Running jobs that stopped on cancel.", JOB_LABELS)
EXPIRED = Counter(
    "jobs_expired",
    "Queued jobs the Expirer ended past their deadline, never run (those a worker finds "
    "expired at claim are counted in jobs_dropped).",
    JOB_LABELS,
)
SNOOZED = Counter("jobs_snoozed", "Attempts a handler snoozed (attempt given back).", JOB_LABELS)
OVERRAN = Counter(
    "jobs_overran_timeout",
    "Sync handlers still running at their timeout; their retry waits for the thread.",
    JOB_LABELS,
)
DROPPED = Counter(
    "jobs_dropped",
    "Popped ids that could not be claimed (duplicates, "
    "cancelled or deleted rows, paused queues, expired at claim); never run.",
)
STALE = Counter(
    "jobs_stale_outcomes",
    "Outcomes of attempts that had lost their lease; fenced off, they changed nothing.",
)
HOOK_ERRORS = Counter(
    "hook_errors",
    "Exceptions raised by middleware hooks, by hook (before_enqueue, on_dead, ...); logged "
    "with the job id, they never change a job's outcome (docs/middleware.md).",
    ("hook",),
)
RESCUED = Counter("jobs_rescued", "Lost attempts given back by rescue.", ("outcome",))
RECONCILED = Counter("jobs_reconciled", "Dispatched jobs missing from Redis, queued again.")
REDIS_REBUILDS = Counter("redis_rebuilds", "Times Redis was found empty and rebuilt.")
REDIS_FAILOVERS = Counter(
    "redis_failovers",
    "Switches of the Redis in use (to a backup, back to redis.url, or to the primary "
    "Sentinel names), by the endpoint switched to.",
    ("to",),
)
REDIS_ACTIVE = Gauge(
    "redis_active_endpoint",
    "Processes using each configured Redis endpoint now (index 0 is redis.url).",
    ("index", "url"),
    multiprocess_mode="livesum",
)
PROCESSING = Histogram(
    "job_processing_duration_seconds",
    "Handler run time per attempt.",
    JOB_LABELS,
    buckets=DURATION_BUCKETS,
)
WAIT = Histogram(
    "job_wait_seconds",
    "From ready (enqueue or run_at) to start.",
    ("queue",),
    buckets=DURATION_BUCKETS,
)
# queue_length, oldest_job_age_seconds, jobs_running, workers_live, queue_target_seconds
# and their per-lane forms describe the queues, not this process: conveyor.queue_gauges
# reads them from PostgreSQL in whichever process serves /metrics (see exposition()).
WORKER_ACTIVE = Gauge("worker_active", "Jobs running now.", multiprocess_mode="livesum")
BREAKER_STATE = Gauge(
    "circuit_breaker_state",
    "0 closed, 1 half-open, 2 open.",
    ("queue",),
    multiprocess_mode="mostrecent",
)
# Postgres-only mode (no Redis answers): per process, so a supervisor reports 1 while any
# of its worker processes is in it.
POSTGRES_ONLY = Gauge(
    "postgres_only_mode",
    "1 while this process works without Redis: workers claim straight from PostgreSQL, "
    "the queuer cannot dispatch.",
    multiprocess_mode="livemax",
)
POSTGRES_ONLY_SECONDS = Counter(
    "postgres_only_seconds", "Seconds this process spent in postgres-only mode."
)


def exposition(*collectors: Collector) -> bytes:
    """The text format for /metrics: this process, or all processes in multiprocess mode,
    followed by `collectors` (figures this process reads for the whole system, which must
    not be summed over processes)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for collector in LOCAL_COLLECTORS:
            registry.register(collector)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if collectors:
        extra = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            extra.register(collector)
        body += generate_latest(extra)
    return body


def mark_process_dead(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# Alerts: set by the leader's evaluation (1 firing, 0 resolved), so the most recent
# writer, the leader, is the one that counts.
ALERTS_FIRING = Gauge(
    "alerts_firing",
    "1 while the alert fires, 0 once it resolved.",
    ("rule", "queue", "severity"),
    multiprocess_mode="mostrecent",
)
ALERT_NOTIFICATIONS = Counter(
    "alert_notifications",
    "Alert notification attempts, by receiver and outcome (delivered, failed, gave_up).",
    ("receiver", "outcome"),
)


# --------------------------------------------------------------------------------------------
# The worker supervisor's own figures (process count, autoscaling decisions). They live in
# the supervisor's memory, not in the multiprocess files (the supervisor sets the files'
# directory only after importing this module), so exposition() adds them beside the
# files' totals (see register_local).


class SupervisorCollector(Collector):
    def __init__(self) -> None:
        self.processes: int | None = None
        self.decisions: dict[tuple[str, str], int] = {}

    def count_decision(self, direction: str, reason: str) -> None:
        key = (direction, reason)
        self.decisions[key] = self.decisions.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        if self.processes is None:
            return
        yield GaugeMetricFamily(
            "worker_processes", "Worker processes the supervisor keeps running now.", self.processes
        )
        decisions = CounterMetricFamily(
            "autoscale_decisions",
            "Autoscaling decisions that changed the process count, by direction and reason.",
            labels=("direction", "reason"),
        )
        for (direction, reason), count in sorted(self.decisions.items()):
            decisions.add_metric([direction, reason], count)
        yield decisions


# Collectors whose figures live in this process's memory (not in multiprocess files).
LOCAL_COLLECTORS: list[Collector] = []


def register_local(collector: Collector) -> None:
    LOCAL_COLLECTORS.append(collector)
    REGISTRY.register(collector)


SUPERVISOR = SupervisorCollector()
register_local(SUPERVISOR)
