"""The settings models: every section, its defaults and its validation."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from annotated_types import Le
from cryptography.fernet import Fernet
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from conveyor.config.alerts import AlertSettings, RuleOverrides
from conveyor.config.autoscale import AutoscaleSettings, OptProcessRange
from conveyor.config.base import (
    ConfigError,
    ConfigIssue,
    Loc,
    Role,
    _FieldProblem,
    _Section,
)
from conveyor.config.connections import DatabaseSettings, RedisSettings, SentinelSettings
from conveyor.config.limits import LimitsSettings, OptLimit, OptRate
from conveyor.config.liveness import LivenessSettings
from conveyor.config.metrics_history import MetricsSettings
from conveyor.config.schedules import SchedulerSettings, ScheduleSettings
from conveyor.config.tracing import TracingSettings
from conveyor.config.web import ApiToken, WebSettings, WebUser
from conveyor.durations import (
    ByteSize,
    CommaList,
    Int,
    Interval,
    NonNegDuration,
    NonNegInt,
    OptInterval,
    Port,
    PosInt,
    format_duration,
    lowercase,
)
from conveyor.vocabulary import MAX_PRIORITY, MIN_PRIORITY

__all__ = [
    "ApiToken",
    "ConfigError",
    "ConfigIssue",
    "DatabaseSettings",
    "Loc",
    "RedisSettings",
    "Role",
    "SentinelSettings",
    "Settings",
    "WebSettings",
    "WebUser",
]


class QueuerSettings(_Section):
    batch_size: Annotated[PosInt, Le(10_000)] = 500
    buffer_per_queue: PosInt = 4000
    poll_interval: Interval = 0.5
    backlog_poll_interval: Interval = 0.02
    # A low-lane job that has waited this long is dispatched into (or moved to) the
    # normal lane, so a busy normal lane cannot starve it. None: off.
    low_lane_aging: OptInterval = None
    # The buffer of queues with fairness between tenants: small, as a tenant's new job
    # waits behind whatever already sits in Redis.
    fair_buffer_per_queue: PosInt = 100


class WorkerSettings(_Section):
    count: Annotated[PosInt, Le(10_000)] = 10
    processes: Annotated[PosInt, Le(256)] = 1
    queues: CommaList = Field(default_factory=list)
    lane_order: Annotated[Literal["queue", "priority"], BeforeValidator(lowercase)] = "queue"
    shutdown_grace: NonNegDuration = 30.0
    heartbeat_interval: Interval = 1.0
    dead_after: Interval = 5.0
    lease: Interval = 30.0
    fetch_timeout: Interval = 1.0
    postgres_only_after: NonNegDuration = 3.0
    postgres_only_poll: Interval = 0.5
    # "MIN:MAX": the supervisor adds and removes processes between these (see autoscale).
    autoscale: OptProcessRange = None

    @model_validator(mode="after")
    def _check_liveness(self) -> Self:
        if self.dead_after <= self.heartbeat_interval:
            raise _FieldProblem(
                f"worker.dead_after ({format_duration(self.dead_after)}) must be longer than "
                f"worker.heartbeat_interval ({format_duration(self.heartbeat_interval)}), "
                "or healthy workers would be presumed dead",
                "dead_after",
                "heartbeat_interval",
            )
        return self


def _check_priority(priority: int) -> int:
    # The range every enqueue enforces: a default outside it would load, then fail at the
    # first task registered with it.
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(
            f"must be from {MIN_PRIORITY} (most urgent) to {MAX_PRIORITY}, "
            f"like every job's priority (got {priority})"
        )
    return priority


# jobs.max_attempts is stored in an integer column; a larger value would fail every insert.
_PG_INTEGER_MAX = 2**31 - 1


class JobsSettings(_Section):
    default_priority: Annotated[Int, AfterValidator(_check_priority)] = 100
    max_attempts: Annotated[PosInt, Le(_PG_INTEGER_MAX)] = 3
    max_payload_bytes: ByteSize = 1_048_576
    # A larger return value is not kept: the job completes without it (docs/results.md).
    max_result_bytes: ByteSize = 1_048_576
    timeout: OptInterval = None


class RetrySettings(_Section):
    base: NonNegDuration = 1.0
    cap: NonNegDuration = 300.0
    jitter: bool = True

    @model_validator(mode="after")
    def _check_cap(self) -> Self:
        if self.cap < self.base:
            raise _FieldProblem(
                f"retry.cap ({format_duration(self.cap)}) must not be shorter than "
                f"retry.base ({format_duration(self.base)})",
                "cap",
                "base",
            )
        return self


class MaintenanceSettings(_Section):
    rescue_interval: Interval = 1.0
    reconcile_interval: Interval = 2.0
    reconcile_grace: NonNegDuration = 2.0
    prune_interval: Interval = 3600.0
    retention: Interval = 7 * 86400.0
    dead_retention: Interval = 30 * 86400.0
    # How often queued jobs past their deadline are ended as expired (conveyor.expiry).
    expire_interval: Interval = 5.0


class HealthSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 0
    # Off: this process's /metrics leaves out the queue gauges and never reads them.
    queue_gauges: bool = True


class ThresholdsSettings(_Section):
    warning_waiting: NonNegInt = 100
    critical_waiting: NonNegInt = 1000
    critical_failures_per_hour: NonNegInt = 10
    default_target: Interval = 300.0

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.critical_waiting < self.warning_waiting:
            raise _FieldProblem(
                f"thresholds.critical_waiting ({self.critical_waiting}) must not be below "
                f"thresholds.warning_waiting ({self.warning_waiting})",
                "critical_waiting",
                "warning_waiting",
            )
        return self


class QueueSettings(_Section):
    target: OptInterval = None
    warning_waiting: NonNegInt | None = None
    critical_waiting: NonNegInt | None = None
    critical_failures_per_hour: NonNegInt | None = None
    alerts: RuleOverrides | None = None
    # This queue's queuer.low_lane_aging (None: the global one).
    low_lane_aging: OptInterval = None
    # Global limits on the queue's jobs, across every worker (docs/scheduling.md).
    rate_limit: OptRate = None
    concurrency_limit: OptLimit = None
    # "tenant": the queuer dispatches round-robin across the tenants of the queue's jobs.
    fairness: Annotated[Literal["none", "tenant"], BeforeValidator(lowercase)] = "none"


class CircuitBreakerSettings(_Section):
    failure_threshold: PosInt = 5
    cooldown_period: Interval = 30.0
    enabled: bool = False


class EncryptionSettings(_Section):
    keys: CommaList = Field(default_factory=list, repr=False)
    fields: CommaList = Field(default_factory=list)

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, keys: list[str]) -> list[str]:
        for number, key in enumerate(keys, start=1):
            try:
                Fernet(key.encode())
            except ValueError:
                raise ValueError(
                    f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "generate one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None
        return keys

    @model_validator(mode="after")
    def _fields_need_keys(self) -> Self:
        if self.fields and not self.keys:
            # Otherwise the "sensitive" fields would be stored in clear, silently.
            raise _FieldProblem("fields to encrypt are listed but no keys are set", "keys")
        return self


class LogSettings(_Section):
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lowercase)] = (
        "info"
    )
    format: Annotated[Literal["text", "json"], BeforeValidator(lowercase)] = "text"


# The specification's table of per-queue latency targets, in seconds.
_DEFAULT_QUEUES: dict[str, dict[str, Any]] = {
    "email-sending:high": {"target": 60.0},
    "email-sending": {"target": 300.0},
    "email-sending:low": {"target": 1800.0},
    "analytics:daily-aggregate": {"target": 3600.0},
    "warmup:process": {"target": 900.0},
}


def _default_queues() -> dict[str, QueueSettings]:
    return {name: QueueSettings.model_validate(entry) for name, entry in _DEFAULT_QUEUES.items()}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    queuer: QueuerSettings = Field(default_factory=QueuerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    thresholds: ThresholdsSettings = Field(default_factory=ThresholdsSettings)
    queues: dict[str, QueueSettings] = Field(default_factory=_default_queues)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    liveness: LivenessSettings = Field(default_factory=LivenessSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    autoscale: AutoscaleSettings = Field(default_factory=AutoscaleSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    # Periodic jobs defined in configuration, by name (see docs/scheduling.md).
    schedules: dict[str, ScheduleSettings] = Field(default_factory=dict)

    def queue_target(self, queue: str, lane: str | None = None) -> float:
        """Latency target in seconds: "queue:lane", then "queue", then the global default."""
        for name in ([f"{queue}:{lane}"] if lane else []) + [queue]:
            entry = self.queues.get(name)
            if entry is not None and entry.target is not None:
                return entry.target
        return self.thresholds.default_target

    def fair_queues(self) -> list[str]:
        """Queues dispatched round-robin across tenants (queues.<name>.fairness: tenant)."""
        return sorted(name for name, entry in self.queues.items() if entry.fairness == "tenant")

    def low_lane_aging(self, queue: str) -> float | None:
        """Seconds after which this queue's low-lane jobs go to its normal lane, or None."""
        entry = self.queues.get(queue)
        if entry is not None and entry.low_lane_aging is not None:
            return entry.low_lane_aging
        return self.queuer.low_lane_aging

    def queue_thresholds(self, queue: str) -> tuple[int, int, int]:
        """(warning_waiting, critical_waiting, critical_failures_per_hour) for ``queue``."""
        entry = self.queues.get(queue) or QueueSettings()
        base = self.thresholds
        return (
            base.warning_waiting if entry.warning_waiting is None else entry.warning_waiting,
            base.critical_waiting if entry.critical_waiting is None else entry.critical_waiting,
            base.critical_failures_per_hour
            if entry.critical_failures_per_hour is None
            else entry.critical_failures_per_hour,
        )

    @model_validator(mode="after")
    def _check_queue_thresholds(self) -> Self:
        for name in self.queues:
            warning, critical, _ = self.queue_thresholds(name)
            if critical < warning:
                raise _FieldProblem(
                    f"critical_waiting ({critical}) for queue {name!r} must not be below its "
                    f"warning_waiting ({warning})",
                    ("queues", name, "critical_waiting"),
                    ("queues", name, "warning_waiting"),
                )
        return self


_SECTIONS: dict[str, type[BaseModel]] = {
    "database": DatabaseSettings,
    "redis": RedisSettings,
    "queuer": QueuerSettings,
    "worker": WorkerSettings,
    "jobs": JobsSettings,
    "retry": RetrySettings,
    "maintenance": MaintenanceSettings,
    "health": HealthSettings,
    "web": WebSettings,
    "thresholds": ThresholdsSettings,
    "circuit_breaker": CircuitBreakerSettings,
    "encryption": EncryptionSettings,
    "log": LogSettings,
    "liveness": LivenessSettings,
    "tracing": TracingSettings,
    "alerts": AlertSettings,
    "metrics": MetricsSettings,
    "autoscale": AutoscaleSettings,
    "scheduler": SchedulerSettings,
    "limits": LimitsSettings,
}
