"""The autoscaler's decision, a pure function of what was measured.

Hysteresis keeps it from flapping: a scale-up needs one signal past its high mark, a
scale-down needs every signal under its low mark for a whole `scale_down_cooldown`, and
between the two marks nothing changes. Scale-ups are spaced by `scale_up_cooldown`,
scale-downs by `scale_down_cooldown` (also counted from the last scale-up, so a process
just added is not removed at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from conveyor.config.autoscale import AutoscaleSettings, ProcessRange

Direction = Literal["up", "down", "hold"]
UP: Direction = "up"
DOWN: Direction = "down"
HOLD: Direction = "hold"


@dataclass(frozen=True)
class QueueLoad:
    """One served queue: jobs waiting, and its oldest wait against its latency target (the
    lane furthest over its own target)."""

    queue: str
    waiting: int
    oldest_age: float
    target: float


@dataclass(frozen=True)
class Observation:
    processes: int
    queues: Sequence[QueueLoad]
    cpu: float  # host CPU in use, 0..1, averaged over autoscale.cpu_window
    memory: float  # host memory in use, 0..1
    since_up: float | None  # seconds since the last scale-up; None: none yet
    since_down: float | None  # seconds since the last scale-down; None: none yet
    # Seconds every signal has been under its low mark without a break; None: not calm now.
    calm_for: float | None


@dataclass(frozen=True)
class Decision:
    direction: Direction
    target: int  # processes wanted after this decision
    reason: str  # a short label, also the metric's `reason`
    detail: str  # the sentence for the log and the workers page


def pressure(observation: Observation, rules: AutoscaleSettings) -> tuple[str, str] | None:
    """(reason, detail) of the first signal past its high mark, or None."""
    for load in observation.queues:
        if load.waiting > rules.high_water:
            return "depth", f"{load.queue} has {load.waiting} waiting (> {rules.high_water})"
    for load in observation.queues:
        if load.waiting and load.oldest_age > load.target * rules.age_high:
            return "age", (
                f"{load.queue}'s oldest job waited {load.oldest_age:.0f} s "
                f"(target {load.target:.0f} s)"
            )
    # A busy host with nothing waiting is not short of workers (the load is elsewhere, or
    # the running jobs are all there is): another process would only sit idle.
    if not any(load.waiting for load in observation.queues):
        return None
    if observation.cpu > rules.cpu_high:
        return "cpu", f"CPU at {observation.cpu:.0%} (> {rules.cpu_high:.0%})"
    if observation.memory > rules.mem_high:
        return "memory", f"memory at {observation.memory:.0%} (> {rules.mem_high:.0%})"
    return None


def is_calm(
    queues: Sequence[QueueLoad], cpu: float, memory: float, rules: AutoscaleSettings
) -> bool:
    """Every signal under its low mark, and no queue past its latency target."""
    return (
        all(load.waiting < rules.low_water for load in queues)
        and not any(load.waiting and load.oldest_age > load.target for load in queues)
        and cpu < rules.cpu_low
        and memory < rules.mem_low
    )


def _waited(since: float | None, needed: float) -> bool:
    return since is None or since >= needed


def decide(observation: Observation, bounds: ProcessRange, rules: AutoscaleSettings) -> Decision:
    current = observation.processes
    if current < bounds.minimum:
        return Decision(UP, bounds.minimum, "below_min", f"{current} running, minimum {bounds}")
    if current > bounds.maximum:
        return Decision(DOWN, bounds.maximum, "above_max", f"{current} running, maximum {bounds}")
    pushed = pressure(observation, rules)
    if pushed is not None:
        reason, detail = pushed
        if current >= bounds.maximum:
            return Decision(HOLD, current, "at_max", f"{detail}; already at the maximum")
        if not _waited(observation.since_up, rules.scale_up_cooldown):
            return Decision(HOLD, current, "cooldown", f"{detail}; last scale-up too recent")
        target = min(bounds.maximum, current + rules.step_up)
        return Decision(UP, target, reason, detail)
    if observation.calm_for is None:
        return Decision(HOLD, current, "steady", "load between the low and high marks")
    if current <= bounds.minimum:
        return Decision(HOLD, current, "at_min", "idle; already at the minimum")
    cooldown = rules.scale_down_cooldown
    if observation.calm_for < cooldown:
        return Decision(
            HOLD, current, "cooldown", f"idle for {observation.calm_for:.0f} s of {cooldown:.0f} s"
        )
    if not (_waited(observation.since_down, cooldown) and _waited(observation.since_up, cooldown)):
        return Decision(HOLD, current, "cooldown", "last scale change too recent")
    detail = f"every queue under {rules.low_water} waiting, CPU and memory low"
    return Decision(DOWN, current - 1, "idle", detail)
