"""The alert rules: pure functions from a snapshot of the history to the findings that hold.

A rule looks at the minutes of `metrics_minutes` that ended within its window (a minute
is rolled up after it ends, so a 5-minute window holds the last five whole minutes).
Level rules (backlog, oldest wait, no workers) hold when the level is over the threshold
in every one of those minutes, so one busy minute does not page anyone; counting rules
(failure rate, dead letters) add the window's minutes up. A queue with no minute in the
window finds nothing: its alerts resolve (docs/alerts.md says what that means when the
rollup itself stops).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from conveyor.config import Settings
from conveyor.config.alerts import (
    CIRCUIT_OPEN,
    DEAD_LETTER_GROWTH,
    FAILURE_RATE,
    NO_WORKERS,
    OLDEST_WAIT,
    POSTGRES_ONLY,
    QUEUE_BACKLOG,
    REDIS_FAILOVER,
    RULES,
    Rule,
)
from conveyor.durations import format_duration
from conveyor.store.alerts import Finding, LiveWorker, MetricsMinute

MINUTE = 60.0


@dataclass(frozen=True)
class Snapshot:
    minutes: list[MetricsMinute]
    workers: list[LiveWorker]  # live ones only
    leader_postgres_only: bool = False
    # The leader's Redis: on a backup of redis.url (failover), and which one.
    leader_on_backup: bool = False
    redis_in_use: str = ""


def rule_for(settings: Settings, name: str, queue: str = "") -> Rule:
    entry = settings.queues.get(queue) if queue else None
    return settings.alerts.rule(name, entry.alerts if entry is not None else None)


def history_window(settings: Settings) -> float:
    """How far back the snapshot must read: the longest window of any rule and queue."""
    windows = [rule_for(settings, name).window for name in RULES]
    for queue in settings.queues:
        windows += [rule_for(settings, name, queue).window for name in RULES]
    return max(windows) + MINUTE


def _within(minutes: Iterable[MetricsMinute], window: float) -> list[MetricsMinute]:
    return [m for m in minutes if m.age_seconds <= window + MINUTE]


def _per_minute(
    minutes: Iterable[MetricsMinute], figure: Callable[[MetricsMinute], float | None]
) -> list[float]:
    """The figure summed over lanes, one value per minute. A minute the rollup wrote late
    (after a leader gap) has no gauges: unknown, so it neither fires nor holds a level."""
    totals: dict[float, float] = defaultdict(float)
    for m in minutes:
        value = figure(m)
        if value is not None:
            totals[round(m.age_seconds // MINUTE)] += value
    return list(totals.values())


def evaluate(settings: Settings, snapshot: Snapshot) -> list[Finding]:
    """Every finding that holds in `snapshot`, in a stable order."""
    by_queue: dict[str, list[MetricsMinute]] = defaultdict(list)
    for minute in snapshot.minutes:
        by_queue[minute.queue_name].append(minute)
    findings: list[Finding] = []
    for queue in sorted(by_queue):
        minutes = by_queue[queue]
        findings += _backlog(settings, queue, minutes)
        findings += _failure_rate(settings, queue, minutes)
        findings += _oldest_wait(settings, queue, minutes)
        findings += _no_workers(settings, queue, minutes, snapshot.workers)
        findings += _dead_letters(settings, queue, minutes)
    findings += _circuits(settings, snapshot.workers)
    findings += _postgres_only(settings, snapshot)
    findings += _failover(settings, snapshot)
    return findings


def _finding(
    rule: Rule, name: str, queue: str, summary: str, value: float, limit: float
) -> Finding:
    return Finding(name, queue, rule.severity, summary, float(value), float(limit))


def _backlog(settings: Settings, queue: str, minutes: list[MetricsMinute]) -> list[Finding]:
    rule = rule_for(settings, QUEUE_BACKLOG, queue)
    levels = _per_minute(_within(minutes, rule.window), lambda m: m.waiting)
    if not rule.enabled or not levels or min(levels) <= rule.threshold:
        return []
    waiting = min(levels)
    summary = (
        f"{waiting:.0f} jobs waiting in {queue}, over {rule.threshold:.0f} "
        f"for {format_duration(rule.window)}"
    )
    return [_finding(rule, QUEUE_BACKLOG, queue, summary, waiting, rule.threshold)]


def _failure_rate(settings: Settings, queue: str, minutes: list[MetricsMinute]) -> list[Finding]:
    rule = rule_for(settings, FAILURE_RATE, queue)
    window = _within(minutes, rule.window)
    failed = sum(m.failed + m.dead for m in window)
    finished = failed + sum(m.completed for m in window)
    if not rule.enabled or finished == 0 or finished < rule.min_sample:
        return []
    rate = failed / finished
    if rate <= rule.threshold:
        return []
    summary = (
        f"{rate:.1%} of attempts in {queue} failed over {format_duration(rule.window)} "
        f"({failed} of {finished}), over {rule.threshold:.1%}"
    )
    return [_finding(rule, FAILURE_RATE, queue, summary, rate, rule.threshold)]


def _oldest_wait(settings: Settings, queue: str, minutes: list[MetricsMinute]) -> list[Finding]:
    """The lane furthest over its target (threshold 1 = the target itself)."""
    rule = rule_for(settings, OLDEST_WAIT, queue)
    if not rule.enabled:
        return []
    by_lane: dict[str, list[float]] = defaultdict(list)
    counted: dict[str, int] = defaultdict(int)
    window = _within(minutes, rule.window)
    for m in window:
        if m.waiting is None:
            continue  # not measured (see _per_minute)
        counted[m.lane] += 1
        if m.oldest_wait is not None:
            by_lane[m.lane].append(m.oldest_wait)
    worst: tuple[float, str, float, float] | None = None
    for lane, waits in by_lane.items():
        if len(waits) < counted[lane]:
            continue  # the lane was empty in one of the minutes
        limit = rule.threshold * settings.queue_target(queue, lane)
        wait = min(waits)
        if wait > limit and (worst is None or wait / limit > worst[0]):
            worst = (wait / limit, lane, wait, limit)
    if worst is None:
        return []
    _, lane, wait, limit = worst
    summary = (
        f"the oldest {lane}-priority job in {queue} has waited {format_duration(wait)}, "
        f"over its {format_duration(limit)} target"
    )
    return [_finding(rule, OLDEST_WAIT, queue, summary, wait, limit)]


def _no_workers(
    settings: Settings, queue: str, minutes: list[MetricsMinute], workers: list[LiveWorker]
) -> list[Finding]:
    rule = rule_for(settings, NO_WORKERS, queue)
    levels = _per_minute(_within(minutes, rule.window), lambda m: m.waiting)
    if not rule.enabled or not levels or min(levels) <= rule.threshold:
        return []
    if any(queue in worker.queues for worker in workers):
        return []
    waiting = min(levels)
    summary = f"{waiting:.0f} jobs waiting in {queue} and no live worker serves it"
    return [_finding(rule, NO_WORKERS, queue, summary, waiting, rule.threshold)]


def _dead_letters(settings: Settings, queue: str, minutes: list[MetricsMinute]) -> list[Finding]:
    rule = rule_for(settings, DEAD_LETTER_GROWTH, queue)
    dead = sum(m.dead for m in _within(minutes, rule.window))
    if not rule.enabled or dead == 0 or dead < rule.threshold:
        return []
    summary = f"{dead} job(s) of {queue} went dead in the last {format_duration(rule.window)}"
    return [_finding(rule, DEAD_LETTER_GROWTH, queue, summary, dead, rule.threshold)]


def _circuits(settings: Settings, workers: list[LiveWorker]) -> list[Finding]:
    open_in: dict[str, int] = defaultdict(int)
    for worker in workers:
        for queue in set(worker.breakers_open):
            open_in[queue] += 1
    findings = []
    for queue in sorted(open_in):
        rule = rule_for(settings, CIRCUIT_OPEN, queue)
        count = open_in[queue]
        if rule.enabled and count > rule.threshold:
            summary = f"the circuit breaker of {queue} is open in {count} worker(s)"
            findings.append(_finding(rule, CIRCUIT_OPEN, queue, summary, count, rule.threshold))
    return findings


def _postgres_only(settings: Settings, snapshot: Snapshot) -> list[Finding]:
    rule = rule_for(settings, POSTGRES_ONLY)
    workers = sum(1 for worker in snapshot.workers if worker.postgres_only)
    count = workers + (1 if snapshot.leader_postgres_only else 0)
    if not rule.enabled or count <= rule.threshold:
        return []
    who = [f"{workers} worker(s)"] if workers else []
    who += ["the leading queuer"] if snapshot.leader_postgres_only else []
    summary = f"postgres-only mode (no Redis answers): {' and '.join(who)}"
    return [_finding(rule, POSTGRES_ONLY, "", summary, count, rule.threshold)]


def _failover(settings: Settings, snapshot: Snapshot) -> list[Finding]:
    rule = rule_for(settings, REDIS_FAILOVER)
    if not rule.enabled or not snapshot.leader_on_backup or rule.threshold >= 1:
        return []
    summary = f"Redis failover active: the leader uses {snapshot.redis_in_use}, not redis.url"
    return [_finding(rule, REDIS_FAILOVER, "", summary, 1, rule.threshold)]
