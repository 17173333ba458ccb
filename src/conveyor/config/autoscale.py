"""Autoscaling settings: `worker.autoscale` ("MIN:MAX") and the `autoscale` section.

The defaults are the specification's: scale up past 1,000 waiting jobs in a served queue
or 80 % CPU or 85 % memory; scale down only under 100 waiting and 30 % CPU and 40 %
memory, at most once per 300 s. docs/autoscaling.md explains each rule.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, NamedTuple, Self

from annotated_types import Ge, Gt, Le
from pydantic import BeforeValidator, model_validator

from conveyor.config.base import _FieldProblem, _Section
from conveyor.durations import (
    Interval,
    NonNegDuration,
    NonNegInt,
    PosInt,
    _as_duration,
    none_if_blank,
)

MAX_PROCESSES = 256
_RANGE = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


class ProcessRange(NamedTuple):
    minimum: int
    maximum: int

    def __str__(self) -> str:
        return f"{self.minimum}:{self.maximum}"


def parse_process_range(value: object) -> object:
    """ "2:8" -> ProcessRange(2, 8); ValueError saying what is wrong otherwise."""
    value = none_if_blank(value)
    if value is None or isinstance(value, ProcessRange):
        return value
    if isinstance(value, list | tuple) and len(value) == 2:
        value = f"{value[0]}:{value[1]}"
    if not isinstance(value, str):
        raise ValueError(f"expected MIN:MAX worker processes such as 1:4, got {value!r}")
    match = _RANGE.fullmatch(value)
    if match is None:
        raise ValueError(f"expected MIN:MAX worker processes such as 1:4, got {value!r}")
    minimum, maximum = int(match.group(1)), int(match.group(2))
    if minimum < 1:
        raise ValueError(f"MIN must be at least 1 (got {value!r})")
    if maximum < minimum:
        raise ValueError(f"MAX must not be below MIN (got {value!r})")
    if maximum > MAX_PROCESSES:
        raise ValueError(f"MAX must be at most {MAX_PROCESSES} (got {value!r})")
    return ProcessRange(minimum, maximum)


OptProcessRange = Annotated[ProcessRange | None, BeforeValidator(parse_process_range)]
Fraction01 = Annotated[float, Gt(0), Le(1)]


class AutoscaleSettings(_Section):
    # Waiting jobs (ready or buffered) in any one served queue that call for more processes.
    high_water: PosInt = 1000
    # Every served queue must be under this before a process is removed.
    low_water: NonNegInt = 100
    # Host CPU and memory use, as fractions of the whole machine, averaged over cpu_window.
    cpu_high: Fraction01 = 0.80
    mem_high: Fraction01 = 0.85
    cpu_low: Fraction01 = 0.30
    mem_low: Fraction01 = 0.40
    cpu_window: Interval = 60.0
    # Least time between two scale-downs, and since the last scale-up before a scale-down.
    scale_down_cooldown: NonNegDuration = 300.0
    # Least time between two scale-ups: long enough for a new process to start taking jobs.
    scale_up_cooldown: NonNegDuration = 30.0
    # Processes added per scale-up (never beyond MAX).
    step_up: Annotated[PosInt, Le(MAX_PROCESSES)] = 1
    # How often the supervisor measures and decides.
    check_interval: Interval = 5.0
    # Oldest wait, as a fraction of the queue's latency target, that calls for more
    # processes; a queue over it also blocks any scale-down.
    age_high: Annotated[float, Ge(0)] = 1.0
    # The scaling signal (GET /api/scaling, conveyor_desired_workers): how much rollup
    # history the arrival rate and the average run time are taken over (whole minutes,
    # rounded up), and how long /metrics reuses a computed answer.
    signal_window: Annotated[float, Gt(0), Le(86400), BeforeValidator(_as_duration)] = 300.0
    signal_cache: NonNegDuration = 10.0

    @property
    def signal_minutes(self) -> int:
        return max(1, math.ceil(self.signal_window / 60 - 1e-9))

    @model_validator(mode="after")
    def _check_marks(self) -> Self:
        if self.low_water >= self.high_water:
            raise _FieldProblem(
                f"autoscale.low_water ({self.low_water}) must be below autoscale.high_water "
                f"({self.high_water}), or one depth would call for both directions",
                "low_water",
                "high_water",
            )
        for low, high in (("cpu_low", "cpu_high"), ("mem_low", "mem_high")):
            if getattr(self, low) >= getattr(self, high):
                raise _FieldProblem(
                    f"autoscale.{low} ({getattr(self, low)}) must be below autoscale.{high} "
                    f"({getattr(self, high)})",
                    low,
                    high,
                )
        return self
