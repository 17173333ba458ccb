"""Heartbeats that cannot lie: a worker that cannot prove its leases gives its attempts up
and never renews them again, so the rescuer elsewhere takes over after the lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import psycopg

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.worker.leases import LeaseTrust
from tests.conftest import Running, wait_until


@dataclass(frozen=True)
class Job:
    id: UUID


@dataclass(frozen=True)
class Flight:
    job: Job


async def test_leases_past_half_their_time_without_a_heartbeat_are_disowned() -> None:
    trust = LeaseTrust(lease=0.4)
    flight = Flight(Job(uuid4()))
    disowned: list[Flight] = []
    assert trust.trusted([flight], disowned.append) == [flight]
    trust.proven(trust.now())
    assert trust.trusted([flight], disowned.append) == [flight], "a heartbeat proved it"
    await wait_until(lambda: not trust.trusted([flight], disowned.append), message="distrust")
    assert disowned == [flight], "disowned once"
    trust.proven(trust.now())
    assert trust.trusted([flight], disowned.append) == [], "never renewed again"
    assert disowned == [flight]
    fresh = Flight(Job(uuid4()))
    assert trust.trusted([flight, fresh], disowned.append) == [fresh], "a new claim is proven"
    assert trust.trusted([], disowned.append) == [] and not trust.disowned, "forgotten"


async def test_a_worker_whose_heartbeats_fail_gives_its_job_up(
    settings_factory: Callable[..., Settings], db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(**{"worker.lease": 1.0})
    from conveyor.store.migrate import migrate

    migrate(settings.database.url, settings.database.schema_name)
    app = Conveyor(settings)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @app.task(queue="slow", max_attempts=5)
    async def slow(payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    running = Running(app)
    try:
        running.queuer()
        worker = running.worker(["slow"])
        job_id = await app.aenqueue(slow, {})
        await asyncio.wait_for(started.wait(), 20)

        async def silent(*_: Any) -> Any:
            # A heartbeat stuck on a wedged connection (its deadline far away): the
            # verdict must not wait for it.
            await asyncio.Event().wait()

        worker.store.heartbeat = silent  # type: ignore[method-assign]
        await asyncio.wait_for(cancelled.wait(), 20)
        assert worker.counts["lost_lease"] >= 1
        await wait_until(lambda: job_id not in worker.in_flight, message="the attempt over")
        assert job_id not in worker.leases.disowned, "forgotten once over"
        # Its outcome (handed back, from the cancellation) was dropped, not recorded: the
        # attempt ends as the rescuer's "worker lost" once the lease runs out.
        first = b"SELECT status FROM job_logs WHERE job_id = %s ORDER BY attempt_number LIMIT 1"
        await wait_until(
            lambda: db.execute(first, (job_id,)).fetchone() == ("lost",),
            message="the rescuer to take the given-up attempt over",
        )
    finally:
        await running.stop()
        await app.aclose()
