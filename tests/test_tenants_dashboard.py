"""Tenant isolation on the dashboard: every action for a tenant-scoped caller on its own
tenant's job, on another tenant's job, and for an unscoped caller; the pages show nothing
of another tenant (the API's matrix is in test_tenants.py)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
import pytest

from conveyor.config import Settings
from conveyor.scope import Scope
from conveyor.web.app import create_app
from tests.factories import add_batch, add_job, add_worker
from tests.test_dashboard import csrf_of
from tests.test_tenants import OTHER, OWN, TOKENS, jobs_snapshot, scoped_tokens, target
from tests.test_web_security import log_in, serving, web_settings

# -- the dashboard: every action x {own tenant, other tenant, unscoped} ---------------------


DASHBOARD_ACTIONS: list[tuple[str, str, dict[str, str], bool]] = [
    # (path, status of the target job, form fields, allowed for a tenant-scoped caller)
    ("/queues/{queue}/pause", "queued", {}, False),
    ("/queues/{queue}/resume", "queued", {}, False),
    ("/queues/{queue}/clear-failed", "dead", {}, True),
    ("/jobs/{job_id}/retry", "dead", {}, True),
    ("/jobs/{job_id}/replay", "dead", {"payload": '{{"edited": true}}'}, True),
    ("/jobs/{job_id}/cancel", "queued", {}, True),
    ("/jobs/{job_id}/delete", "queued", {}, True),
    ("/jobs/retry", "dead", {"ids": "{job_id}"}, True),
    ("/jobs/delete", "queued", {"ids": "{job_id}"}, True),
    ("/dead/replay", "dead", {"scope": "all", "queue": "{queue}"}, True),
    ("/dead/purge", "dead", {"queue": "{queue}"}, True),
    # Schedules belong to no tenant: refused to every tenant-scoped caller.
    ("/schedules/{queue}/pause", "queued", {}, False),
    ("/schedules/{queue}/resume", "queued", {}, False),
    ("/schedules/{queue}/trigger", "queued", {}, False),
]


def test_the_tenant_dashboard_matrix_covers_every_action() -> None:
    from tests.test_dashboard_roles import DASHBOARD_ACTIONS as ROLE_ACTIONS

    expected = {
        path.replace("{name}", "{queue}").replace("{id}", "{job_id}") for path, *_ in ROLE_ACTIONS
    }
    assert {path for path, *_ in DASHBOARD_ACTIONS} == expected


@pytest.mark.parametrize(("path", "status", "fields", "allowed"), DASHBOARD_ACTIONS)
async def test_dashboard_tenant_matrix(
    path: str,
    status: str,
    fields: dict[str, str],
    allowed: bool,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = web_settings(settings_factory, **{"web.tokens": scoped_tokens()})
    with psycopg.connect(settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        for n, (who, tenant) in enumerate((("acme", OWN), ("acme", OTHER), ("all", OTHER))):
            t = target(db, n, tenant, status)
            if path.startswith("/schedules/") and not path.endswith("/resume"):
                db.execute(b"UPDATE schedules SET paused = false WHERE name = %s", (t["queue"],))
            if path.endswith("/resume"):
                db.execute(
                    b"UPDATE job_queues SET is_active = false WHERE name = %s", (t["queue"],)
                )
            before = jobs_snapshot(db)
            async with serving(settings) as http:
                assert (await log_in(http, token=TOKENS[who])).status_code == 303
                csrf = csrf_of((await http.get("/login", follow_redirects=True)).text)
                data = {key: value.format(**t) for key, value in fields.items()}
                reply = await http.post(path.format(**t), data={**data, "csrf_token": csrf})
            changed = jobs_snapshot(db) != before
            if who == "all" or (tenant == OWN and allowed):
                assert reply.status_code == 303, (who, tenant, reply.text)
                assert changed, (who, tenant)
            else:
                assert not changed, (who, tenant, "changed another tenant's job")
                assert reply.status_code in (303, 403, 404), reply.text


async def test_dashboard_pages_show_nothing_of_another_tenant(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = web_settings(settings_factory, **{"web.tokens": scoped_tokens()})
    with psycopg.connect(settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        mine = add_job(db, "mine-q", status="dead", tenant=OWN)
        theirs = add_job(db, "their-q", status="dead", tenant=OTHER)
        add_worker(db, "their-worker", ["their-q"])
        batch = add_batch(db, [theirs])
        db.execute(
            b"INSERT INTO alerts (rule, queue_name, severity, state, summary)"
            b" VALUES ('no_workers', 'their-q', 'critical', 'firing', 'jobs wait in their-q')"
        )
    async with serving(settings) as http:
        assert (await log_in(http, token=TOKENS["acme"])).status_code == 303
        for page in ("/", "/fragments/queues", "/dead", "/dead/rows", "/workers",
                     "/fragments/workers", f"/jobs/{mine}", "/queues/mine-q",
                     "/queues/mine-q/rows", "/queues/mine-q/summary", "/alerts",
                     "/fragments/alerts", "/fragments/alerts-banner"):  # fmt: skip
            reply = await http.get(page)
            assert reply.status_code == 200, (page, reply.text)
            for secret in (str(theirs), "their-q", "their-worker"):
                assert secret not in reply.text, (page, secret)
        assert str(mine) in (await http.get("/dead")).text
        assert f"<code>{OWN}</code>" in (await http.get(f"/jobs/{mine}")).text
        for page in ("/", "/queues/mine-q/summary"):  # no button that would only be refused
            assert "/pause" not in (await http.get(page)).text
        for page in (f"/jobs/{theirs}", "/queues/their-q", "/queues/their-q/rows"):
            assert (await http.get(page)).status_code == 404, page
        # The metrics history counts every tenant's jobs: no link to it, and a refusal.
        assert 'href="/charts"' not in (await http.get("/")).text
        charts = await http.get("/charts")
        assert charts.status_code == 403 and "their-q" not in charts.text
        # So does a batch: no link, and a refusal of the list, a batch and its rows.
        assert 'href="/batches"' not in (await http.get("/")).text
        for page in ("/batches", "/fragments/batches", f"/batches/{batch}"):
            refused = await http.get(page)
            assert refused.status_code == 403 and str(theirs) not in refused.text, page


async def test_each_scope_keeps_its_own_throughput_history(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = web_settings(settings_factory, **{"web.tokens": scoped_tokens()})
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        for who in ("all", "acme", "all"):
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                assert (await log_in(http, token=TOKENS[who])).status_code == 303
                assert (await http.get("/")).status_code == 200
    assert set(app.state.dashboard_history) == {Scope(), Scope.of([OWN])}
