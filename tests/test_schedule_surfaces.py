"""Schedules through the CLI and the dashboard (the API's auth and tenant matrices are in
test_api.py and test_tenants.py, the dashboard's in test_dashboard_roles.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from click.testing import Result

from conveyor.config import Settings
from tests.factories import add_schedule
from tests.test_cli_admin import Invoke, cli, one_line_error, parsed
from tests.test_dashboard import csrf_of
from tests.test_web_security import PASSWORD, log_in, serving, web_settings

__all__ = ["cli"]  # the fixture, shared

Db = psycopg.Connection[Any]


def test_cli_lists_pauses_resumes_and_triggers(cli: Invoke, db: Db) -> None:
    add_schedule(db, "nightly", cron="30 2 * * *", timezone="Europe/Paris")
    (listed,) = parsed(cli("schedules", "--json"))
    assert (listed["name"], listed["cron"], listed["timezone"]) == (
        "nightly",
        "30 2 * * *",
        "Europe/Paris",
    )
    table: Result = cli("schedules")
    assert table.exit_code == 0 and "nightly" in table.stdout
    assert parsed(cli("schedule", "pause", "nightly", "--json"))["changed"] is True
    assert "was already paused" in cli("schedule", "pause", "nightly").stdout
    triggered = parsed(cli("schedule", "trigger", "nightly", "--json"))
    assert parsed(cli("schedule", "resume", "nightly", "--json"))["changed"] is True
    row = db.execute(b"SELECT id FROM jobs").fetchone()
    assert row is not None and str(row[0]) == triggered["job_id"]
    assert "unknown schedule 'nope'" in one_line_error(cli("schedule", "trigger", "nope"))
    actions = [a for (a,) in db.execute(b"SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["pause_schedule", "pause_schedule", "trigger_schedule", "resume_schedule"]


def test_cli_without_schedules_says_so(cli: Invoke) -> None:
    assert "no schedules defined" in cli("schedules").stdout
    assert json.loads(cli("schedules", "--json").stdout) == []


async def test_dashboard_page_and_buttons(settings_factory: Callable[..., Settings]) -> None:
    settings = web_settings(settings_factory)
    with psycopg.connect(settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        add_schedule(db, "reports:weekly", cron="0 8 * * 1", queue="reports")
        async with serving(settings) as http:
            assert (await log_in(http, username="alice", password=PASSWORD)).status_code == 303
            page = await http.get("/schedules")
            assert page.status_code == 200
            for text in ("reports:weekly", "0 8 * * 1", "Pause", "Run now", 'href="/schedules"'):
                assert text in page.text, text
            csrf = csrf_of(page.text)
            url = "/schedules/reports:weekly"
            reply = await http.post(f"{url}/pause", data={"csrf_token": csrf})
            assert reply.status_code == 303
            fragment = await http.get("/fragments/schedules")
            assert "Resume" in fragment.text and "paused" in fragment.text
            reply = await http.post(
                f"{url}/trigger", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
            )
            assert reply.status_code == 200 and "enqueued" in reply.text
            refused = await http.post(f"{url}/resume", data={})  # no CSRF token
            assert refused.status_code == 403
        paused = db.execute(b"SELECT paused FROM schedules").fetchone()
        assert paused == (True,)
        assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (1,)
