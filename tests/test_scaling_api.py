"""The scaling signal on fabricated rollup history: GET /api/scaling, the admin layer and
the conveyor_desired_workers gauge give the slots Little's law says, exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest

from conveyor.admin import Admin, Scope
from conveyor.admin.scaling import QueueScaling
from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from tests.factories import add_history, add_job, add_jobs

TOKEN = "viewer-secret-token-0123456789"
Db = psycopg.Connection[Any]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    result = settings_factory(
        **{
            "web.tokens": [{"name": "viewer-bot", "token": TOKEN, "role": "viewer"}],
            "worker.count": 2,
            "autoscale.signal_window": "5m",
            "autoscale.signal_cache": 0,
            "queues.email.target": "5m",
            "queues.reports.target": "1m",
        }
    )
    migrate(result.database.url, result.database.schema_name)
    return result


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield http


def fabricate(db: Db) -> None:
    """email: λ = 600 / 300 s = 2/s, W = 750 s / 600 attempts = 1.25 s, 480 waiting with a
    300 s target: steady 2.5 + backlog 480 * 1.25 / 300 = 2.0 -> 5 slots, 3 processes of 2.
    reports: 3 waiting, nothing finished in the window (W unknown) -> 1 slot.
    archive: λ = 30 / 300 s = 0.1/s, W = 2 s, none waiting: 0.2 -> 1 slot."""
    for ago in range(1, 6):
        # Lanes are summed: the normal lane takes most, the high lane the rest.
        add_history(
            db,
            ago,
            "email",
            enqueued=100,
            completed=90,
            failed=8,
            dead=2,
            run_seconds=125.0,
        )
        add_history(
            db,
            ago,
            "email",
            lane="high",
            enqueued=20,
            completed=20,
            run_seconds=25.0,
        )
        add_history(db, ago, "archive", enqueued=6, completed=6, run_seconds=12.0)
    # Outside the window: the minute in progress, and the one before the window.
    for ago in (0, 6):
        add_history(
            db,
            ago,
            "email",
            enqueued=99_999,
            completed=1,
            run_seconds=99_999.0,
        )
    add_history(db, 6, "reports", completed=10, run_seconds=5.0)
    add_jobs(db, "email", 480)
    for _ in range(3):
        add_job(db, "reports")
    add_job(db, "reports", status="running")  # running is not waiting


EMAIL = QueueScaling(
    queue="email",
    waiting=480,
    arrival_rate_per_second=2.0,
    average_run_seconds=1.25,
    target_seconds=300.0,
    steady_slots=2.5,
    backlog_slots=2.0,
    desired_slots=5,
    desired_workers=3,
)


async def test_scaling_follows_littles_law(settings: Settings, db: Db) -> None:
    fabricate(db)
    async with Admin(settings) as admin:
        scaling = await admin.scaling()
    assert scaling.window_seconds == 300.0
    assert scaling.slots_per_worker == 2
    by_queue = {queue.queue: queue for queue in scaling.queues}
    assert sorted(by_queue) == ["archive", "email", "reports"]
    assert by_queue["email"] == EMAIL
    reports = by_queue["reports"]
    assert (reports.waiting, reports.average_run_seconds) == (3, None)
    assert (reports.target_seconds, reports.desired_slots, reports.desired_workers) == (60.0, 1, 1)
    archive = by_queue["archive"]
    assert (archive.arrival_rate_per_second, archive.average_run_seconds) == (0.1, 2.0)
    assert (archive.steady_slots, archive.backlog_slots, archive.desired_slots) == (0.2, 0.0, 1)
    assert (scaling.desired_slots, scaling.desired_workers) == (7, 4)


async def test_no_history_and_no_jobs_asks_for_nothing(settings: Settings) -> None:
    async with Admin(settings) as admin:
        scaling = await admin.scaling()
    assert (scaling.queues, scaling.desired_slots, scaling.desired_workers) == ([], 0, 0)


async def test_scoped_callers_see_their_queues_and_no_tenant_totals(
    settings: Settings, db: Db
) -> None:
    fabricate(db)
    async with Admin(settings) as admin:
        queue_scoped = await admin.scoped(Scope.of(queues=["email"])).scaling()
        tenant_scoped = await admin.scoped(Scope.of(tenants=["acme"])).scaling()
    assert queue_scoped.queues == [EMAIL]
    # Queue totals count every tenant's jobs: nothing for a tenant-scoped caller.
    assert tenant_scoped.queues == []


async def test_the_api_and_the_gauge_give_the_same_answer(
    client: httpx.AsyncClient, db: Db
) -> None:
    fabricate(db)
    reply = await client.get("/api/scaling", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["desired_slots"], body["desired_workers"]) == (7, 4)
    assert body["queues"][1] == EMAIL.to_dict()
    text = (await client.get("/metrics")).text
    gauges = [line for line in text.splitlines() if line.startswith("conveyor_desired_workers{")]
    assert gauges == [
        'conveyor_desired_workers{queue="archive"} 1.0',
        'conveyor_desired_workers{queue="email"} 3.0',
        'conveyor_desired_workers{queue="reports"} 1.0',
    ]


async def test_the_workers_page_shows_the_autoscalers_decisions(
    client: httpx.AsyncClient, db: Db
) -> None:
    db.execute(
        b"INSERT INTO audit_log (actor, action, target, detail, result) VALUES"
        b" ('autoscaler', 'autoscale', '1->2', %s, 'up')",
        ('{"reason": "depth", "detail": "email has 1200 waiting (> 1000)"}',),
    )
    page = await client.get("/workers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200, page.text
    assert "Autoscaling" in page.text
    assert "1-&gt;2" in page.text and "email has 1200 waiting (&gt; 1000)" in page.text
