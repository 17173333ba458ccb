"""Alerts through the admin layer, `GET /api/alerts` and `conveyor admin alerts`."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from click.testing import CliRunner

from conveyor.admin import Admin, AdminError, Scope
from conveyor.alerting import AlertEvaluator
from conveyor.cli.main import main
from conveyor.config import Settings
from conveyor.store import Store
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from tests.factories import add_metrics_minute, add_worker

Db = psycopg.Connection[Any]
TOKEN = "viewer-secret-token-0123456789"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    result = settings_factory(
        **{
            "web.tokens": [{"name": "viewer-bot", "token": TOKEN, "role": "viewer"}],
            "alerts.receivers": [{"type": "webhook", "name": "ops", "url": "http://127.0.0.1:9/"}],
        }
    )
    migrate(result.database.url, result.database.schema_name)
    return result


async def fabricate(settings: Settings, db: Db) -> None:
    """A resolved backlog alert on "old", then a firing one on "emails" and a system-wide
    postgres-only alert."""
    store = await Store.open(settings, "test", 2)
    try:
        evaluator = AlertEvaluator(store, settings)
        add_worker(db, "w", ["emails", "old"])
        add_metrics_minute(db, "old", waiting=20_000)
        await evaluator.run_once()
        db.execute(b"DELETE FROM metrics_minutes")
        add_metrics_minute(db, "emails", waiting=20_000)
        db.execute(b"UPDATE workers SET postgres_only = true")
        await evaluator.run_once()
    finally:
        await store.close()


async def test_admin_lists_firing_first_with_notifications(settings: Settings, db: Db) -> None:
    await fabricate(settings, db)
    db.execute(b"UPDATE alert_notifications SET attempts = 2, last_error = 'HTTP 500'")
    async with Admin(settings) as admin:
        everything = await admin.alerts()
        assert [(a.rule, a.queue, a.state) for a in everything] == [
            ("postgres_only", None, "firing"),
            ("queue_backlog", "emails", "firing"),
            ("queue_backlog", "old", "resolved"),
        ]
        old = everything[2]
        assert old.resolved_at is not None and old.duration_seconds >= 0
        assert [
            (n.transition, n.receiver, n.delivery, n.last_error) for n in old.notifications
        ] == [
            ("fired", "ops", "retrying", "HTTP 500"),
            ("resolved", "ops", "retrying", "HTTP 500"),
        ]
        assert [a.queue for a in await admin.alerts("resolved")] == ["old"]
        assert len(await admin.alerts("firing", limit=1)) == 1
        counts = await admin.firing_alerts()
        assert (counts.firing, counts.critical) == (2, 1)
        with pytest.raises(AdminError, match="state must be one of"):
            await admin.alerts("burning")
        with pytest.raises(AdminError, match="limit"):
            await admin.alerts(limit=0)
        # Scopes: a queue-scoped caller sees its queues' alerts, no system-wide one; a
        # tenant-scoped caller none (a queue's figures count every tenant's jobs).
        emails = admin.scoped(Scope.of(queues=["emails"]))
        assert [a.queue for a in await emails.alerts()] == ["emails"]
        assert (await emails.firing_alerts()).firing == 1
        tenant = admin.scoped(Scope.of(tenants=["acme"]))
        assert await tenant.alerts() == []
        assert (await tenant.firing_alerts()).firing == 0


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http,
    ):
        yield http


async def test_api_alerts(settings: Settings, db: Db, client: httpx.AsyncClient) -> None:
    await fabricate(settings, db)
    reply = await client.get("/api/alerts", params={"state": "firing"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [(a["rule"], a["queue"]) for a in body] == [
        ("postgres_only", None),
        ("queue_backlog", "emails"),
    ]
    assert body[1]["notifications"][0]["delivery"] == "pending"
    assert body[1]["value"] == 20_000 and body[1]["severity"] == "critical"
    assert len((await client.get("/api/alerts")).json()) == 3
    for bad in ({"state": "burning"}, {"limit": "0"}, {"limit": "x"}, {"stat": "firing"}):
        reply = await client.get("/api/alerts", params=bad)
        assert reply.status_code == 400, (bad, reply.text)
        assert set(reply.json()) == {"error"}


def test_cli_alerts(settings: Settings, db: Db, tmp_path: Path) -> None:
    asyncio.run(fabricate(settings, db))
    config = tmp_path / "conveyor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {
                    "url": settings.database.url,
                    "schema": settings.database.schema_name,
                },
                "redis": {"url": settings.redis.url, "key_prefix": settings.redis.key_prefix},
            }
        )
    )
    hidden = ("DATABASE_", "REDIS_", "CONVEYOR_", "ALERTS_")
    env: dict[str, str | None] = {
        name: None
        for name in os.environ
        if name.startswith(hidden) and not name.startswith("CONVEYOR_TEST_")
    }
    runner = CliRunner(env=env)

    def invoke(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config), "admin", "alerts", *args])

    result = invoke("--json")
    assert result.exit_code == 0, result.output
    assert [a["queue"] for a in json.loads(result.stdout)] == [None, "emails"]
    result = invoke("--all")
    assert result.exit_code == 0, result.output
    for word in ("postgres_only", "queue_backlog", "emails", "old", "resolved", "pending"):
        assert word in result.stdout, word
    result = invoke("--limit", "0")
    assert result.exit_code != 0
    assert "limit" in result.stderr and "Traceback" not in result.output


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


async def test_dashboard_alerts_page_and_banner(settings: Settings, db: Db) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        page = await http.get("/login")
        match = CSRF_INPUT.search(page.text)
        assert match is not None
        data = {"token": TOKEN, "csrf_token": match.group(1), "next": "/"}
        assert (await http.post("/login", data=data)).status_code == 303
        # Nothing fires: the banner is an empty placeholder the page fetches once loaded.
        home = (await http.get("/")).text
        assert 'id="alerts-banner"' in home and 'href="/alerts"' in home
        banner = (await http.get("/fragments/alerts-banner")).text
        assert "firing" not in banner and "load" not in banner
        await fabricate(settings, db)
        banner = (await http.get("/fragments/alerts-banner")).text
        assert "2 alerts firing" in banner and "(1 critical)" in banner
        html = (await http.get("/alerts")).text
        for text in ("postgres_only", "queue_backlog", "emails", "old", "resolved", "pending"):
            assert text in html, text
        firing = (await http.get("/alerts?state=firing")).text
        assert "emails" in firing and ">old<" not in firing
        rows = (await http.get("/fragments/alerts?state=resolved")).text
        assert ">old<" in rows and "emails" not in rows
        reply = await http.get("/alerts?state=burning")
        assert reply.status_code == 400 and "state must be one of" in reply.text
