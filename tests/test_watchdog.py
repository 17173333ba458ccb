"""The watchdog: a loop that stops iterating makes /healthz say so, leaves every stack in
the log and ends its process, which its supervisor restarts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from conveyor import watchdog
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.launch import settings_env
from conveyor.probes import health_app
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, queue_check


async def test_healthz_names_the_stuck_loop(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        **{
            "liveness.watchdog_bound": 0.5,
            "liveness.database_deadline": 0.2,
            "liveness.watchdog_grace": 600,  # stopped by the test long before it would exit
        }
    )
    dog = watchdog.start(settings, "test process")
    assert dog is not None
    try:
        transport = httpx.ASGITransport(health_app(settings, lambda: None))
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            watchdog.beat("test.blocked")  # its one and only iteration
            assert (await client.get("/healthz")).status_code == 200
            await wait_until(lambda: watchdog.stuck(), message="the watchdog to fire")
            reply = await client.get("/healthz")
        assert reply.status_code == 503
        assert reply.json() == {"alive": False, "stuck": ["test.blocked"]}
        assert "event-loop" not in watchdog.stuck(), "the event loop itself kept running"
    finally:
        watchdog.stop()
    assert watchdog.stuck() == []


def test_a_loop_that_finished_or_waits_is_not_stuck() -> None:
    dog = watchdog.Watchdog("test", bound=1.0, grace=0.0)
    dog.beat("ended")
    dog.done("ended")
    dog.beat("waiting")
    dog.idle("waiting")
    dog.beat("late")
    assert [name for name, _ in dog.late(now=float("inf"))] == ["late"]


@pytest.mark.fault
async def test_a_blocked_event_loop_ends_the_worker_process(
    app: Conveyor,
    settings: Settings,
    settings_factory: Callable[..., Settings],
    procs: Processes,
    db: psycopg.Connection[Any],
) -> None:
    """An async handler that blocks its event loop on the first attempt: the worker
    process logs its stacks and exits 70; the supervisor rescues the job and starts a new
    process, where the second attempt completes."""
    keys = {
        "liveness.watchdog_bound": 3.0,
        "liveness.database_deadline": 2.0,
        "liveness.watchdog_grace": 0.5,
    }
    env = settings_env(settings_factory(**keys), list(keys))
    app.tasks.update(recording.app.tasks)
    (job_id,) = app.enqueue_many("loop_blocker", [{"block_on_attempts": [1]}])
    others = app.enqueue_many("job", [{"n": n} for n in range(20)])
    procs.queuer()
    supervisor = procs.worker(processes=1, concurrency=2, **env)

    def done() -> bool:
        row = db.execute(b"SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()
        return row is not None and row[0] == 21

    await wait_until(done, timeout=90, message="every job, the blocker on its second attempt")
    logs = procs.logs()
    assert "is stuck: event-loop" in logs
    assert "--- thread stacks ---" in logs and "loop_blocker" in logs, "the stacks"
    assert "exited with 70" in logs, "the supervisor saw the watchdog's exit status"
    assert app.get_job(job_id).attempt == 2
    assert queue_check(db, [job_id, *others]) == {"completed": 21}
    assert supervisor.poll() is None
