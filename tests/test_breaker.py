"""The per-queue circuit breaker: open after consecutive failures, half-open after the
cooldown, closed again by a success."""

from __future__ import annotations

from typing import Any

import psycopg

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.worker.breaker import Breakers
from tests.conftest import Running, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_states() -> None:
    clock = Clock()
    breakers = Breakers(True, failure_threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        breakers.record("q", failed=True)
    assert not breakers.blocked("q"), "two failures are under the threshold"
    breakers.record("q", failed=True)
    assert breakers.blocked("q") and breakers.state("q") == "open"
    clock.now = 29.9
    assert breakers.blocked("q")
    clock.now = 30.0
    assert not breakers.blocked("q") and breakers.state("q") == "half-open"
    breakers.record("q", failed=True)  # one failure while half-open reopens it
    assert breakers.blocked("q")
    clock.now = 60.0
    assert not breakers.blocked("q")
    breakers.record("q", failed=False)
    assert breakers.state("q") == "closed" and not breakers.blocked("q")
    breakers.record("q", failed=True)
    assert not breakers.blocked("q"), "the count starts again after a success"
    assert not breakers.blocked("other")


def test_disabled_breaker_never_blocks() -> None:
    breakers = Breakers(False, failure_threshold=1, cooldown=30)
    for _ in range(10):
        breakers.record("q", failed=True)
    assert not breakers.blocked("q")


async def test_open_breaker_stops_one_queue_and_not_the_others(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    from conveyor.store.migrate import migrate

    settings: Settings = settings_factory(
        **{
            "circuit_breaker.enabled": True,
            "circuit_breaker.failure_threshold": 2,
            "circuit_breaker.cooldown_period": 600,
        }
    )
    migrate(settings.database.url, settings.database.schema_name)
    app = Conveyor(settings)

    @app.task(name="broken", queue="flaky", max_attempts=1)
    def broken(payload: Any) -> None:
        raise ConnectionError("payment provider is down")

    @app.task(name="fine", queue="steady")
    def fine(payload: Any) -> None:
        return None

    app.enqueue_many(broken, [{}] * 6)
    app.enqueue_many(fine, [{}] * 5)
    running = Running(app)
    running.queuer()
    worker = running.worker(["flaky", "steady"], concurrency=1)
    try:
        await wait_until(
            lambda: (
                db.execute(
                    b"SELECT count(*) FROM jobs WHERE task = 'fine' AND status = 'completed'"
                ).fetchone()
                == (5,)
            ),
            message="the steady queue to drain",
        )
        assert worker.breakers.state("flaky") == "open"
        dead = db.execute(b"SELECT count(*) FROM jobs WHERE task = 'broken' AND status = 'dead'")
        assert dead.fetchone() == (2,), "only the failures before the breaker opened ran"
    finally:
        await running.stop()
        await app.aclose()
