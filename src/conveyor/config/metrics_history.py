"""The `metrics` section: how often the leader rolls up the metrics history and how long
each resolution is kept (docs/metrics-history.md)."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from conveyor.config.base import _FieldProblem, _Section
from conveyor.durations import Interval, format_duration

_HOUR = 3600.0


class MetricsSettings(_Section):
    # How often the leader looks for finished minutes to roll up. Each pass writes every
    # complete minute it has not written yet, so a longer interval delays the charts but
    # loses nothing.
    rollup_interval: Interval = 60.0
    # Minute rows older than this are pruned; the dashboard's 1 h / 24 h / 72 h charts
    # read minute rows, so keep at least 72 h to fill them.
    minute_retention: Interval = 72 * _HOUR
    # Hour rows older than this are pruned.
    hour_retention: Interval = 90 * 24 * _HOUR

    @model_validator(mode="after")
    def _check_retentions(self) -> Self:
        # Each hour row is summed from its minute rows: they must outlive the hour.
        if self.minute_retention < 2 * _HOUR:
            raise _FieldProblem(
                f"metrics.minute_retention ({format_duration(self.minute_retention)}) must "
                "be at least 2h: the hourly rollup is summed from the minute rows",
                "minute_retention",
            )
        if self.hour_retention < self.minute_retention:
            raise _FieldProblem(
                f"metrics.hour_retention ({format_duration(self.hour_retention)}) must not "
                f"be shorter than metrics.minute_retention "
                f"({format_duration(self.minute_retention)})",
                "hour_retention",
                "minute_retention",
            )
        if self.rollup_interval > _HOUR:
            raise _FieldProblem(
                f"metrics.rollup_interval ({format_duration(self.rollup_interval)}) must "
                "be at most 1h, or the history falls behind faster than a pass catches up",
                "rollup_interval",
            )
        return self
