"""The low lane's aging: a low job that waited past its queue's aging time is served as a
normal one, at dispatch or by the aging pass from inside Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from conveyor.aging import LowLaneAging, lane_with_aging
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.store import Store
from conveyor.store.dispatch import DispatchedJob
from tests.apps import recording
from tests.conftest import wait_until
from tests.factories import add_job
from tests.processes import Processes


def job(priority: int, waited: float, queue: str = "mail") -> DispatchedJob:
    return DispatchedJob(uuid4(), queue, priority, waited)


def test_the_lane_follows_priority_until_a_low_job_is_old_enough(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        **{"queuer.low_lane_aging": "10s", "queues.bulk.low_lane_aging": "1m"}
    )
    assert lane_with_aging(job(200, 9.9), settings) == "low"
    assert lane_with_aging(job(200, 10.0), settings) == "normal"
    assert lane_with_aging(job(10, 99), settings) == "high"
    assert lane_with_aging(job(100, 99), settings) == "normal"
    # The queue's own aging wins over the global one.
    assert lane_with_aging(job(200, 30, "bulk"), settings) == "low"
    assert lane_with_aging(job(200, 60, "bulk"), settings) == "normal"


def test_without_aging_low_stays_low(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    assert lane_with_aging(job(200, 1e6), settings) == "low"
    assert settings.queuer.low_lane_aging is None


def test_a_bad_aging_is_refused(settings_factory: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="low_lane_aging"):
        settings_factory(**{"queuer.low_lane_aging": "soon"})


async def test_the_pass_moves_aged_ids_from_the_low_lane_to_the_normal_lanes_pop_end(
    settings_factory: Callable[..., Settings], db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(**{"queuer.low_lane_aging": "5s"})
    aged = add_job(db, "mail", status="dispatched", priority=200, age=60)
    young = add_job(db, "mail", status="dispatched", priority=200, age=1)
    normal_old = add_job(db, "mail", status="dispatched", priority=100, age=60)
    store = await Store.open(settings, "test", 2)
    lanes = Lanes.open(settings)
    try:
        low, normal = lanes.keys.lane("mail", "low"), lanes.keys.lane("mail", "normal")
        await lanes.client.lpush(low, str(young), str(aged))
        await lanes.client.lpush(normal, str(normal_old))
        aging = LowLaneAging(store, lanes, settings)
        assert await aging.run_once() == 1
        assert await lanes.client.lrange(low, 0, -1) == [str(young).encode()]
        # Popped from the right: the aged job comes before the older normal one.
        assert await lanes.client.lrange(normal, 0, -1) == [
            str(normal_old).encode(),
            str(aged).encode(),
        ]
        # Again: nothing left to move, and the job moved once only.
        assert await aging.run_once() == 0
        assert await lanes.client.llen(normal) == 2
    finally:
        await store.close()
        await lanes.close()


async def test_the_pass_is_off_without_aging(
    settings_factory: Callable[..., Settings], db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory()
    add_job(db, "mail", status="dispatched", priority=200, age=3600)
    store = await Store.open(settings, "test", 2)
    lanes = Lanes.open(settings)
    try:
        aging = LowLaneAging(store, lanes, settings)
        assert not aging.enabled
        assert await aging.run_once() == 0
    finally:
        await store.close()
        await lanes.close()


async def test_a_low_job_runs_before_a_busy_normal_lane_empties(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    low = app.enqueue("job", {"n": -1}, priority=200)
    app.enqueue_many("job", [{"n": n, "sleep": 0.02} for n in range(300)], priority=100)
    procs.queuer(QUEUER__LOW_LANE_AGING="1s")
    # One job at a time, each queue's high, normal, low lanes in turn: without aging the
    # low job would run after all 300 normal ones.
    procs.worker(concurrency=1)
    await wait_until(
        lambda: (
            db.execute(b"SELECT status FROM jobs WHERE id = %s", (low,)).fetchone()
            == ("completed",)
        ),
        timeout=120,
        message="the low job to complete",
    )
    waiting = db.execute(
        b"SELECT count(*) FROM jobs WHERE status <> 'completed' AND priority = 100"
    ).fetchone()
    assert waiting is not None and waiting[0] > 0, "the low job ran before the normal lane emptied"
