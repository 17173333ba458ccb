"""System health in the specification's shape. It never raises: a part that cannot be
checked (Redis or PostgreSQL down) is reported critical, with the error."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from conveyor.admin.models import Model, Stats
from conveyor.admin.stats import StatsMixin
from conveyor.errors import first_line, reason
from conveyor.postgres_only import NORMAL, POSTGRES_ONLY, Mode

HealthStatus = Literal["healthy", "warning", "critical"]
RANK: dict[HealthStatus, int] = {"healthy": 0, "warning": 1, "critical": 2}
FROM_COLOUR: dict[str, HealthStatus] = {"green": "healthy", "yellow": "warning", "red": "critical"}
# Policies that may evict any key, lanes included (the reconciler repairs that, at a cost).
EVICTING = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random"})
MEMORY_WARNING = 0.9
FAILURE_RATE_WARNING = 0.05
MIN_ATTEMPTS_FOR_RATE = 20
# The dashboard asks on every refresh: a Redis that hangs must not hold the page up.
MODE_PING_SECONDS = 1.0


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    return max(statuses, key=RANK.__getitem__, default="healthy")


@dataclass(frozen=True, kw_only=True)
class RedisHealth(Model):
    status: HealthStatus
    message: str
    latency_ms: float | None = None
    used_memory: int | None = None
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    error: str | None = None
    # Which Redis (without password) and whether it is a backup (redis.failover_urls).
    url: str | None = None
    failover_active: bool = False


@dataclass(frozen=True, kw_only=True)
class DatabaseHealth(Model):
    status: HealthStatus
    message: str
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class QueueHealth(Model):
    name: str
    status: HealthStatus
    paused: bool
    waiting: int
    oldest_waiting_age_seconds: float | None
    failed_last_hour: int
    live_workers: int
    reasons: list[str]


@dataclass(frozen=True, kw_only=True)
class QueuesHealth(Model):
    status: HealthStatus
    message: str
    queues: list[QueueHealth] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class WorkersHealth(Model):
    status: HealthStatus
    message: str
    alive: int = 0
    total: int = 0
    queues_without_workers: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class PerformanceHealth(Model):
    status: HealthStatus
    message: str
    throughput_per_minute: float | None = None
    completed_last_hour: int | None = None
    failed_last_hour: int | None = None
    failure_rate_last_hour: float | None = None
    p95_duration_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class SystemHealth(Model):
    timestamp: datetime
    overall_status: HealthStatus
    redis: RedisHealth
    database: DatabaseHealth
    queues: QueuesHealth
    workers: WorkersHealth
    performance: PerformanceHealth
    # "postgres-only" while PostgreSQL answers and Redis does not (as this process sees
    # them): workers then claim straight from PostgreSQL; `mode_reason` says why.
    mode: Mode = NORMAL
    mode_reason: str | None = None


def system_mode(redis: RedisHealth, database: DatabaseHealth) -> tuple[Mode, str | None]:
    """Postgres-only when Redis cannot be reached but PostgreSQL can: the jobs still run."""
    if redis.error is not None and database.error is None:
        return POSTGRES_ONLY, f"Redis unreachable: {redis.error}"
    return NORMAL, None


def queues_part(stats: Stats) -> QueuesHealth:
    parts = [
        QueueHealth(
            name=q.name,
            status=FROM_COLOUR[q.status],
            paused=q.paused,
            waiting=q.waiting,
            oldest_waiting_age_seconds=q.oldest_waiting_age_seconds,
            failed_last_hour=q.failed_last_hour,
            live_workers=q.live_workers,
            reasons=q.reasons,
        )
        for q in stats.queues
    ]
    status = worst([part.status for part in parts])
    troubled = [part.name for part in parts if part.status != "healthy"]
    message = f"{len(parts)} queue(s)" + (
        f"; needing attention: {', '.join(troubled)}" if troubled else ", all within thresholds"
    )
    return QueuesHealth(status=status, message=message, queues=parts)


def workers_part(stats: Stats) -> WorkersHealth:
    orphaned = [q.name for q in stats.queues if q.waiting and not q.paused and not q.live_workers]
    alive, total = stats.workers.alive, stats.workers.total
    if orphaned:
        message = f"jobs wait in queue(s) no live worker serves: {', '.join(orphaned)}"
    else:
        message = f"{alive} live worker(s) of {total} registered"
    return WorkersHealth(
        status="warning" if orphaned else "healthy",
        message=message,
        alive=alive,
        total=total,
        queues_without_workers=orphaned,
    )


def performance_part(stats: Stats) -> PerformanceHealth:
    completed = sum(q.completed_last_hour for q in stats.queues)
    failed = sum(q.failed_last_hour for q in stats.queues)
    attempts = completed + failed
    rate = failed / attempts if attempts else None
    throughput = round(sum(q.throughput_per_minute for q in stats.queues), 3)
    high = rate is not None and attempts >= MIN_ATTEMPTS_FOR_RATE and rate > FAILURE_RATE_WARNING
    message = f"{throughput:g} jobs/min; " + (
        f"failure rate {rate:.1%} over the last hour"
        if rate is not None
        else "no attempts finished in the last hour"
    )
    return PerformanceHealth(
        status="warning" if high else "healthy",
        message=message,
        throughput_per_minute=throughput,
        completed_last_hour=completed,
        failed_last_hour=failed,
        failure_rate_last_hour=None if rate is None else round(rate, 4),
        p95_duration_seconds=stats.p95_duration_seconds,
    )


class HealthMixin(StatsMixin):
    async def health(self) -> SystemHealth:
        """Redis, PostgreSQL, queues, workers and performance, each healthy, warning or
        critical; overall is the worst of them. Never raises."""
        redis_part, (database, stats, stats_error) = await asyncio.gather(
            self._redis_health(), self._database_health()
        )
        if stats is not None:
            queues, workers, performance = (
                queues_part(stats),
                workers_part(stats),
                performance_part(stats),
            )
        else:
            why = f"not checked: {stats_error}"
            queues = QueuesHealth(status="critical", message=why, error=stats_error)
            workers = WorkersHealth(status="critical", message=why, error=stats_error)
            performance = PerformanceHealth(status="critical", message=why, error=stats_error)
        statuses = [
            redis_part.status,
            database.status,
            queues.status,
            workers.status,
            performance.status,
        ]
        mode, mode_reason = system_mode(redis_part, database)
        return SystemHealth(
            timestamp=stats.timestamp if stats is not None else datetime.now(UTC),
            overall_status=worst(statuses),
            redis=redis_part,
            database=database,
            queues=queues,
            workers=workers,
            performance=performance,
            mode=mode,
            mode_reason=mode_reason,
        )

    async def mode(self) -> tuple[Mode, str | None]:
        """The mode alone, from one Redis ping (for the dashboard's banner); never raises."""
        try:
            await asyncio.wait_for(self.lanes.ping(), MODE_PING_SECONDS)
        except Exception as error:  # noqa: BLE001 - any failure means no Redis for us
            return POSTGRES_ONLY, f"Redis unreachable: {reason(error)}"
        return NORMAL, None

    async def _redis_health(self) -> RedisHealth:
        timeout = self.settings.redis.socket_timeout
        active = self.lanes.endpoint
        try:
            started = time.perf_counter()
            await asyncio.wait_for(self.lanes.ping(), timeout)
            latency = round((time.perf_counter() - started) * 1000, 3)
            memory = await asyncio.wait_for(self.lanes.memory(), timeout)
        except Exception as error:  # noqa: BLE001 - health reports every failure
            return await self._redis_unreachable(reason(error), active.url)
        used, limit = memory.used_memory, memory.maxmemory
        policy = memory.maxmemory_policy
        status: HealthStatus = "healthy"
        notes = [f"ping {latency:g} ms"]
        if active.on_backup:
            # Working, but on borrowed time: one more failure and there may be no Redis.
            status = "warning"
            notes.insert(0, f"failover active: using backup {active.url}")
        if policy in EVICTING:
            status = "warning"
            notes.append(f"maxmemory-policy {policy} may evict queue lanes (use noeviction)")
        if limit and used >= MEMORY_WARNING * limit:
            status = "warning"
            notes.append(f"memory {used / limit:.0%} of maxmemory")
        return RedisHealth(
            status=status,
            message="; ".join(notes),
            latency_ms=latency,
            used_memory=used,
            maxmemory=limit,
            maxmemory_policy=policy,
            url=active.url,
            failover_active=active.on_backup,
        )

    async def _redis_unreachable(self, text: str, url: str) -> RedisHealth:
        """The Redis this admin uses does not answer. If another configured one does, the
        processes use it (or will, after redis.failover_after): a warning, not critical.
        A one-shot `conveyor admin health` starts on redis.url, so this is its usual path
        while the primary is down."""
        found = await self.lanes.survey() if len(self.lanes.endpoints.candidates) > 1 else []
        answering = [(i, other) for i, (other, error) in enumerate(found) if error is None]
        message = f"Redis is unreachable ({url}): {text}"
        if not answering:
            return RedisHealth(status="critical", message=message, error=text, url=url)
        index, other = answering[0]
        after = self.settings.redis.failover_after
        message += f"; {other} answers: processes use it (they move after {after:g} s)"
        return RedisHealth(
            status="warning", message=message, error=text, url=other, failover_active=index > 0
        )

    async def _database_health(self) -> tuple[DatabaseHealth, Stats | None, str | None]:
        timeout = self.settings.database.connect_timeout
        try:
            started = time.perf_counter()
            # The pool gives up waiting for a connection after connect_timeout.
            async with asyncio.timeout(timeout + 1):
                await self.store.ping()
            latency = round((time.perf_counter() - started) * 1000, 3)
        except Exception as error:  # noqa: BLE001 - health reports every failure
            text = reason(error)
            part = DatabaseHealth(
                status="critical", message=f"PostgreSQL is unreachable: {text}", error=text
            )
            return part, None, f"PostgreSQL is unreachable: {text}"
        part = DatabaseHealth(status="healthy", message=f"query {latency:g} ms", latency_ms=latency)
        try:
            async with asyncio.timeout(timeout + 5):
                stats = await self.stats()
        except Exception as error:  # noqa: BLE001 - health reports every failure
            return part, None, first_line(error)
        return part, stats, None
