"""The metrics history as the CLI, the HTTP API and the dashboard read it: one series of
points per window, system-wide or for one queue, with every bucket present (a quiet or
missing minute reads as zeros, so a chart has no gaps). See docs/metrics-history.md."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from conveyor.admin.base import AdminBase, check_optional_queue
from conveyor.admin.errors import AdminError, AdminForbidden
from conveyor.admin.models import Model
from conveyor.durations import format_duration, parse_duration
from conveyor.store.metrics_history import HistoryRow

Resolution = Literal["minute", "hour"]
# The windows the dashboard and the CLI offer; any other duration is accepted too.
WINDOWS = ("1h", "24h", "72h")
# Up to this long a window reads minute rows (the default minute retention); past it,
# hour rows.
MINUTE_WINDOW_MAX = 72 * 3600.0
MIN_WINDOW = 60.0
MAX_WINDOW = 400 * 86400.0
COUNTS = ("enqueued", "completed", "failed", "dead", "retried", "rescued")


@dataclass(frozen=True, kw_only=True)
class HistoryPoint(Model):
    """One minute or hour. Counts are attempts that finished in it (enqueued: jobs
    created in it); waiting, running and oldest_wait_seconds were read at its end and are
    None where unknown; percentiles in seconds, None without attempts."""

    bucket: datetime
    enqueued: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    retried: int = 0
    rescued: int = 0
    waiting: int | None = None
    running: int | None = None
    oldest_wait_seconds: float | None = None
    run_p50: float | None = None
    run_p95: float | None = None
    run_p99: float | None = None
    wait_p50: float | None = None
    wait_p95: float | None = None
    wait_p99: float | None = None


@dataclass(frozen=True, kw_only=True)
class MetricsHistory(Model):
    window: str  # as asked, normalised: "1h", "24h", "7d"
    window_seconds: float
    resolution: Resolution
    queue: str | None  # None: every queue in the caller's scope, summed
    queues: list[str]  # the queues in scope with history in the window
    since: datetime  # the first bucket
    until: datetime  # the end of the last bucket rolled up (exclusive)
    points: list[HistoryPoint]

    @property
    def totals(self) -> dict[str, int]:
        """The window's counts, summed."""
        return {name: sum(getattr(point, name) for point in self.points) for name in COUNTS}


def check_window(value: object) -> float:
    """A window such as "1h", "24h", "72h" or "7d", in seconds; AdminError otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AdminError(f"window must be a duration such as 1h, 24h or 72h, not {value!r}")
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise AdminError(f"window: {error}") from None
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise AdminError(
            f"window must be from {format_duration(MIN_WINDOW)} to "
            f"{format_duration(MAX_WINDOW)}, not {value!r}"
        )
    return seconds


class HistoryMixin(AdminBase):
    async def metrics_history(self, window: object = "1h", queue: object = None) -> MetricsHistory:
        """Throughput, failures, gauges and latency per minute (windows up to 72 h) or per
        hour (longer ones), for one queue or summed over every queue in scope.

        History is kept per queue, not per tenant: a tenant-scoped caller is refused; a
        queue-scoped one sees (and sums) only its queues."""
        seconds = check_window(window)
        name = check_optional_queue(queue)
        if self.scope.tenants is not None:
            raise AdminForbidden(
                "the metrics history counts every tenant's jobs; a tenant-scoped "
                "credential may not read it"
            )
        hourly = seconds > MINUTE_WINDOW_MAX
        async with self.session() as store:
            found = await store.metrics_history_window(seconds, hourly, self.scope)
            # A queue with history is known even after its last job and row are gone.
            if name is not None and name not in found.queues:
                await self.require_queue(store, name)
            rows = await store.metrics_history(found.since, hourly, name, self.scope)
        step = timedelta(hours=1) if hourly else timedelta(minutes=1)
        if found.rolled_through is None:
            until = found.since  # nothing rolled up yet: no bucket is known
        elif hourly:
            # The hour under way has a row too, rewritten by every pass until it ends.
            until = found.until + step
        else:
            until = min(found.until, found.rolled_through)
        return MetricsHistory(
            window=_spelling(seconds),
            window_seconds=seconds,
            resolution="hour" if hourly else "minute",
            queue=name,
            queues=found.queues,
            since=found.since,
            until=max(until, found.since),
            points=_filled(rows, found.since, until, step),
        )


def _spelling(seconds: float) -> str:
    """The window as the dashboard and the CLI name it ("24h", not "1d")."""
    presets = {parse_duration(preset): preset for preset in WINDOWS}
    return presets.get(seconds, format_duration(seconds))


def _filled(
    rows: list[HistoryRow], since: datetime, until: datetime, step: timedelta
) -> list[HistoryPoint]:
    """Every bucket in [since, until): a row's figures, or zeros where there is none."""
    by_bucket = {row.bucket: row for row in rows}
    points: list[HistoryPoint] = []
    bucket = since
    while bucket < until:
        row = by_bucket.get(bucket)
        points.append(_point(row) if row is not None else HistoryPoint(bucket=bucket))
        bucket += step
    return points


def _point(row: HistoryRow) -> HistoryPoint:
    return HistoryPoint(
        bucket=row.bucket,
        enqueued=row.enqueued,
        completed=row.completed,
        failed=row.failed,
        dead=row.dead,
        retried=row.retried,
        rescued=row.rescued,
        waiting=row.waiting,
        running=row.running,
        oldest_wait_seconds=row.oldest_wait,
        run_p50=row.run_p50,
        run_p95=row.run_p95,
        run_p99=row.run_p99,
        wait_p50=row.wait_p50,
        wait_p95=row.wait_p95,
        wait_p99=row.wait_p99,
    )


def downsample(points: list[HistoryPoint], most: int) -> list[HistoryPoint]:
    """At most `most` points for a chart or a sparkline: consecutive buckets merged,
    counts summed, gauges as at the group's last known reading, percentiles the worst
    (the same rules as the hourly rollup)."""
    if most < 1:
        raise ValueError("most must be at least 1")
    size = -(-len(points) // most)  # ceiling: every group but the last is full
    if size <= 1:
        return list(points)
    merged: list[HistoryPoint] = []
    for start in range(0, len(points), size):
        group = points[start : start + size]
        gauged = [p for p in group if p.waiting is not None]
        last = gauged[-1] if gauged else None
        merged.append(
            HistoryPoint(
                bucket=group[0].bucket,
                enqueued=sum(p.enqueued for p in group),
                completed=sum(p.completed for p in group),
                failed=sum(p.failed for p in group),
                dead=sum(p.dead for p in group),
                retried=sum(p.retried for p in group),
                rescued=sum(p.rescued for p in group),
                waiting=None if last is None else last.waiting,
                running=None if last is None else last.running,
                oldest_wait_seconds=_worst(p.oldest_wait_seconds for p in group),
                run_p50=_worst(p.run_p50 for p in group),
                run_p95=_worst(p.run_p95 for p in group),
                run_p99=_worst(p.run_p99 for p in group),
                wait_p50=_worst(p.wait_p50 for p in group),
                wait_p95=_worst(p.wait_p95 for p in group),
                wait_p99=_worst(p.wait_p99 for p in group),
            )
        )
    return merged


def _worst(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None
