"""Throughput history for the sparklines, kept in this web process.

The admin layer reports one figure per queue, the completion rate of the last five
minutes. Sampling it each time the dashboard reads the stats, one value per bucket,
gives a short series to draw without another query. The history starts empty when the
process starts and is the same for every viewer.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from conveyor.admin import Stats

BUCKET_SECONDS = 30
BUCKETS = 60  # half an hour
MAX_QUEUES = 1000  # a bound on memory should queue names churn


class ThroughputHistory:
    def __init__(self, bucket_seconds: int = BUCKET_SECONDS, buckets: int = BUCKETS) -> None:
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self._series: dict[str, deque[tuple[int, float]]] = {}

    def record(self, stats: Stats) -> None:
        bucket = self._bucket(stats.timestamp)
        for queue in stats.queues:
            series = self._series.get(queue.name)
            if series is None:
                if len(self._series) >= MAX_QUEUES:
                    continue
                series = self._series[queue.name] = deque(maxlen=self.buckets)
            value = round(queue.throughput_per_minute, 2)
            if series and series[-1][0] == bucket:
                series[-1] = (bucket, value)
            elif not series or series[-1][0] < bucket:
                series.append((bucket, value))

    def values(self, queue: str) -> list[float]:
        """The queue's samples, oldest first; a bucket nobody looked at repeats the one
        before it (the rolling rate changes slowly, so this draws no false dips)."""
        series = self._series.get(queue)
        if not series:
            return []
        first, last = series[0][0], series[-1][0]
        start = max(first, last - self.buckets + 1)
        by_bucket = dict(series)
        result: list[float] = []
        previous = next((value for bucket, value in reversed(series) if bucket < start), 0.0)
        for bucket in range(start, last + 1):
            previous = by_bucket.get(bucket, previous)
            result.append(previous)
        return result

    def _bucket(self, moment: datetime) -> int:
        return int(moment.timestamp()) // self.bucket_seconds
