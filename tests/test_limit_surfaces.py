"""Limits through admin, the CLI, the API, the dashboard and the gauges (the API's auth
and tenant matrices are in test_api.py and test_tenants.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from conveyor.admin import Admin, AdminError, AdminForbidden, AdminNotFound
from conveyor.config import Settings
from conveyor.queue_gauges import QueueGauges
from conveyor.scope import Scope
from tests.factories import add_job
from tests.test_cli_admin import Invoke, cli, one_line_error, parsed
from tests.test_prometheus_gauges import parse_collected
from tests.test_web_security import PASSWORD, TOKEN, log_in, serving, web_settings

__all__ = ["cli"]  # the fixture, shared

Db = psycopg.Connection[Any]


def keyed(db: Db, key: str, status: str = "queued", queue: str = "q") -> None:
    add_job(db, queue, limit_key=key, limited=True, status=status, payload={})


def test_cli_sets_lists_and_removes(cli: Invoke, db: Db) -> None:
    result = parsed(cli("limit", "set", "key:*.gmail.com", "--rate", "20/m", "--json"))
    assert result["changed"] is True
    assert "already was" in cli("limit", "set", "key:*.gmail.com", "--rate", "20/m").stdout
    parsed(cli("limit", "set", "queue:q", "--concurrency", "2", "--json"))
    keyed(db, "a.gmail.com")
    keyed(db, "a.gmail.com", status="running")
    keyed(db, "b.gmail.com")
    add_job(db, "q", status="running", payload={})
    listed = {item["scope"]: item for item in parsed(cli("limits", "--json"))}
    assert set(listed) == {"queue:q", "key:*.gmail.com", "key:a.gmail.com", "key:b.gmail.com"}
    assert (listed["queue:q"]["in_flight"], listed["queue:q"]["source"]) == (2, "admin")
    assert listed["key:a.gmail.com"]["governed_by"] == "key:*.gmail.com"
    assert (listed["key:a.gmail.com"]["in_flight"], listed["key:a.gmail.com"]["waiting"]) == (1, 1)
    assert listed["key:a.gmail.com"]["rate"] == "20/m"
    pattern = listed["key:*.gmail.com"]
    assert (pattern["in_flight"], pattern["waiting"]) == (1, 2)  # summed over its keys
    table = cli("limits")
    assert table.exit_code == 0 and "*.gmail.com" in table.stdout
    assert "invalid rate" in one_line_error(cli("limit", "set", "queue:q", "--rate", "fast"))
    assert "give --rate" in cli("limit", "set", "queue:q").output
    assert "unknown scope kind" in one_line_error(cli("limit", "set", "lane:q", "--rate", "1/s"))
    assert parsed(cli("limit", "remove", "queue:q", "--json"))["changed"] is True
    assert "no limit is set on queue:q" in one_line_error(cli("limit", "remove", "queue:q"))
    actions = [a for (a,) in db.execute(b"SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["set_limit", "set_limit", "set_limit", "remove_limit"]


async def test_scoped_callers(settings: Settings) -> None:
    async with Admin(settings) as admin:
        await admin.set_limit("queue:mine", "test", concurrency=1)
        await admin.set_limit("key:k", "test", rate="1/s")
        tenant = admin.scoped(Scope(tenants=["acme"], queues=None))
        assert await tenant.limits() == []
        with pytest.raises(AdminForbidden):
            await tenant.set_limit("queue:mine", "acme", concurrency=3)
        queues = admin.scoped(Scope(tenants=None, queues=["mine"]))
        assert [info.scope for info in await queues.limits()] == ["queue:mine"]
        with pytest.raises(AdminForbidden):
            await queues.set_limit("key:k", "ops", rate="5/s")
        with pytest.raises(AdminError, match="concurrency limit must be a positive"):
            await admin.set_limit("queue:mine", "test", concurrency=0)
        with pytest.raises(AdminError, match="give a rate, a concurrency"):
            await admin.set_limit("queue:mine", "test")
        with pytest.raises(AdminNotFound):
            await admin.remove_limit("task:none", "test")
        assert {info.scope for info in await admin.limits()} == {"queue:mine", "key:k"}


async def test_api_dashboard_and_gauges(settings_factory: Callable[..., Settings]) -> None:
    settings = web_settings(settings_factory)
    async with Admin(settings) as admin:
        await admin.set_limit("key:*", "test", concurrency=3)
        await admin.set_limit("queue:q", "test", rate="10/s")
    with psycopg.connect(settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        for number in range(30):
            keyed(db, f"customer-{number}", queue="other")
        keyed(db, "customer-0", status="running", queue="other")
        add_job(db, "q", payload={})
        async with serving(settings) as http:
            reply = await http.get("/api/limits", headers={"Authorization": f"Bearer {TOKEN}"})
            assert reply.status_code == 200
            scopes = [item["scope"] for item in reply.json()]
            assert scopes[:2] == ["key:*", "queue:q"] and len(scopes) == 32
            assert await log_in(http, username="alice", password=PASSWORD) is not None
            page = await http.get("/schedules")
            assert page.status_code == 200
            for text in ("Limits", "key:*", "queue:q", "10/s"):
                assert text in page.text, text
            fragment = await http.get("/fragments/limits")
            assert fragment.status_code == 200 and "customer-0" in fragment.text
    gauges = QueueGauges(settings, refresh_seconds=5, drop_after=60, clock=lambda: 1000.0)
    await gauges.refresh()
    samples = parse_collected(gauges)
    # 30 keys under "*" make one series: the pattern's, summed over its keys.
    assert samples[("limit_in_flight", (("scope", "key:*"),))] == 1
    assert samples[("limit_waiting", (("scope", "key:*"),))] == 30
    assert samples[("limit_waiting", (("scope", "queue:q"),))] == 1
    assert len([name for name, _ in samples if name == "limit_waiting"]) == 2
