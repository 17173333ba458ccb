"""The autoscaler's decision function on a table of measurements, no-flap cases included."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conveyor.autoscale.decision import Decision, Observation, QueueLoad, decide, is_calm
from conveyor.cli import main
from conveyor.config import ConfigError, load_settings
from conveyor.config.autoscale import AutoscaleSettings, ProcessRange
from conveyor.store.upkeep import QueueDepth
from conveyor.worker.autoscaler import queue_loads

RULES = AutoscaleSettings()  # the specification's defaults
BOUNDS = ProcessRange(1, 4)
LONG = 10_000.0  # seconds: any cool-down is over


def observe(
    processes: int = 2,
    depth: int = 0,
    age: float = 0.0,
    cpu: float = 0.1,
    memory: float = 0.2,
    since_up: float | None = LONG,
    since_down: float | None = LONG,
    calm_for: float | None = None,
) -> Observation:
    load = QueueLoad("email", depth, age, target=300.0)
    return Observation(processes, [load], cpu, memory, since_up, since_down, calm_for)


CASES = [
    # scale up: each signal past its high mark, one step at a time
    ("depth over high water", observe(depth=1001), ("up", 3, "depth")),
    ("depth at high water is not over", observe(depth=1000), ("hold", 2, "steady")),
    ("oldest wait over target", observe(depth=5, age=301), ("up", 3, "age")),
    ("old but empty queue", observe(depth=0, age=900), ("hold", 2, "steady")),
    ("cpu over 80 %", observe(depth=5, cpu=0.81), ("up", 3, "cpu")),
    ("memory over 85 %", observe(depth=5, memory=0.86), ("up", 3, "memory")),
    ("busy host, nothing waiting", observe(cpu=0.95, memory=0.9), ("hold", 2, "steady")),
    ("no step past max", observe(processes=4, depth=5000), ("hold", 4, "at_max")),
    ("scale-up cool-down", observe(depth=5000, since_up=10), ("hold", 2, "cooldown")),
    ("scale-up cool-down over", observe(depth=5000, since_up=30), ("up", 3, "depth")),
    ("first scale-up ever", observe(depth=5000, since_up=None), ("up", 3, "depth")),
    # bounds are enforced first
    ("below min", observe(processes=0), ("up", 1, "below_min")),
    ("above max", observe(processes=6), ("down", 4, "above_max")),
    # scale down: only when calm for a whole cool-down, never below min
    ("idle long enough", observe(calm_for=300), ("down", 1, "idle")),
    ("idle, not long enough", observe(calm_for=299), ("hold", 2, "cooldown")),
    ("idle at min", observe(processes=1, calm_for=LONG), ("hold", 1, "at_min")),
    ("scale-downs spaced", observe(calm_for=LONG, since_down=120), ("hold", 2, "cooldown")),
    ("just scaled up", observe(calm_for=LONG, since_up=120), ("hold", 2, "cooldown")),
    ("first scale-down ever", observe(calm_for=300, since_down=None), ("down", 1, "idle")),
    # hysteresis: between the marks nothing moves in either direction
    ("depth between marks", observe(depth=500), ("hold", 2, "steady")),
    ("cpu between marks", observe(cpu=0.5), ("hold", 2, "steady")),
    ("memory between marks", observe(memory=0.6), ("hold", 2, "steady")),
    # pressure wins over a stale calm reading
    ("pressure beats calm", observe(depth=2000, calm_for=LONG), ("up", 3, "depth")),
]


@pytest.mark.parametrize(
    ("observation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decision_table(observation: Observation, expected: tuple[str, int, str]) -> None:
    decision = decide(observation, BOUNDS, RULES)
    assert (decision.direction, decision.target, decision.reason) == expected
    assert decision.detail


def test_step_up_is_capped_at_max() -> None:
    rules = AutoscaleSettings(step_up=3)
    decision = decide(observe(processes=2, depth=5000), BOUNDS, rules)
    assert decision == Decision("up", 4, "depth", decision.detail)


@pytest.mark.parametrize(
    ("depth", "age", "cpu", "memory", "calm"),
    [
        (0, 0.0, 0.1, 0.2, True),
        (99, 10.0, 0.29, 0.39, True),
        (100, 0.0, 0.1, 0.2, False),  # at the low mark is not under it
        (5, 301.0, 0.1, 0.2, False),  # a queue past its target never scales down
        (0, 0.0, 0.30, 0.2, False),
        (0, 0.0, 0.1, 0.40, False),
    ],
)
def test_calm_needs_every_signal_low(
    depth: int, age: float, cpu: float, memory: float, calm: bool
) -> None:
    loads = [QueueLoad("email", depth, age, 300.0), QueueLoad("idle", 0, 0.0, 60.0)]
    assert is_calm(loads, cpu, memory, RULES) is calm


def test_no_flap_on_a_load_swinging_inside_the_band() -> None:
    """Depth oscillating between the marks for an hour of ticks changes nothing."""
    decisions = {
        decide(observe(depth=depth, since_up=None, since_down=None), BOUNDS, RULES).direction
        for depth in [150, 900, 400, 999, 101] * 100
    }
    assert decisions == {"hold"}


def test_no_flap_after_a_burst() -> None:
    """A burst scales up once per cool-down; its end does not scale down before a whole
    calm cool-down has passed."""
    up = decide(observe(depth=5000, since_up=None), BOUNDS, RULES)
    assert up.direction == "up"
    again = decide(observe(processes=3, depth=5000, since_up=5), BOUNDS, RULES)
    assert again.direction == "hold"
    quiet = decide(observe(processes=3, depth=0, since_up=60, calm_for=55), BOUNDS, RULES)
    assert quiet.direction == "hold"


# -- the settings that feed it ------------------------------------------------------------


def test_autoscale_range_from_the_environment() -> None:
    settings = load_settings(None, env={"WORKER_AUTOSCALE": " 2 : 8 "})
    assert settings.worker.autoscale == ProcessRange(2, 8)
    assert load_settings(None, env={}).worker.autoscale is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0:4", "MIN must be at least 1"),
        ("4:2", "MAX must not be below MIN"),
        ("1:257", "MAX must be at most 256"),
        ("4", "expected MIN:MAX"),
        ("a:b", "expected MIN:MAX"),
    ],
)
def test_bad_autoscale_range_names_the_field(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"WORKER__AUTOSCALE": value})
    (issue,) = caught.value.errors
    assert issue.key == "worker.autoscale" and message in issue.message


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"AUTOSCALE_LOW_WATER": "1000"}, "autoscale.low_water"),
        ({"AUTOSCALE_CPU_LOW": "0.9"}, "autoscale.cpu_low"),
        ({"AUTOSCALE_MEM_HIGH": "0.3"}, "autoscale.mem_high"),
        ({"AUTOSCALE_CPU_HIGH": "1.5"}, "autoscale.cpu_high"),
    ],
)
def test_marks_must_leave_a_band_between_them(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env=env)
    assert [issue.key for issue in caught.value.errors] == [key]


def test_autoscale_and_processes_flags_exclude_each_other() -> None:
    result = CliRunner().invoke(
        main, ["worker", "--app", "x:app", "--autoscale", "1:4", "--processes", "2"]
    )
    assert result.exit_code == 2
    assert "--autoscale and --processes exclude each other" in result.output


def test_queue_loads_sum_lanes_and_keep_the_lane_furthest_past_its_target() -> None:
    settings = load_settings(
        None,
        env={},
        overrides={"queues.email.target": "5m", "queues.email:high.target": "10s"},
    )
    rows = [
        QueueDepth("email", "normal", 300, 120.0),  # 0.4 of its 300 s target
        QueueDepth("email", "high", 20, 15.0),  # 1.5 of its 10 s target: the worst
        QueueDepth("other", "normal", 5000, 9999.0),  # not served: ignored
    ]
    loads = queue_loads(rows, ["email", "idle"], settings)
    assert loads == [
        QueueLoad("email", 320, 15.0, 10.0),
        QueueLoad("idle", 0, 0.0, settings.queue_target("idle")),
    ]
    assert decide(observe_loads(loads), BOUNDS, RULES).reason == "age"


def observe_loads(loads: list[QueueLoad]) -> Observation:
    return Observation(2, loads, 0.1, 0.2, None, None, None)
