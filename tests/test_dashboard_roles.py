"""The dashboard's role matrix: every POST action, for anonymous, viewer, operator and
admin callers, checked against the routes the app really has (the API's matrix is in
test_api.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conveyor.config import Settings
from conveyor.web.app import create_app
from tests.test_dashboard import csrf_of
from tests.test_web_security import Db, db, log_in, serving, web_settings

__all__ = ["db"]  # the fixture, shared

# -- the dashboard's role matrix: every action, every kind of caller -----------------------------

ROLE_TOKENS = {role: f"{role}-matrix-token-0123456789" for role in ("viewer", "operator", "admin")}
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def _queued(db: Db, n: int) -> dict[str, str]:
    from tests.factories import add_job

    queue = f"dm{n}"
    return {"name": queue, "id": str(add_job(db, queue))}


def _dead(db: Db, n: int) -> dict[str, str]:
    from tests.factories import add_job

    queue = f"dm{n}"
    return {"name": queue, "id": str(add_job(db, queue, status="dead", attempt=3))}


def _paused(db: Db, n: int) -> dict[str, str]:
    target = _queued(db, n)
    db.execute(b"UPDATE job_queues SET is_active = false WHERE name = %s", (target["name"],))
    return target


def _schedule(db: Db, n: int) -> dict[str, str]:
    from tests.factories import add_schedule

    add_schedule(db, f"ds{n}", queue=f"dm{n}")
    return {"name": f"ds{n}"}


def _paused_schedule(db: Db, n: int) -> dict[str, str]:
    target = _schedule(db, n)
    db.execute(b"UPDATE schedules SET paused = true WHERE name = %s", (target["name"],))
    return target


# (route path as registered, least role, target maker, form fields)
DASHBOARD_ACTIONS: list[tuple[str, str, Callable[[Db, int], dict[str, str]], dict[str, str]]] = [
    ("/queues/{name}/pause", "operator", _queued, {}),
    ("/queues/{name}/resume", "operator", _paused, {}),
    ("/queues/{name}/clear-failed", "admin", _dead, {}),
    ("/jobs/{id}/retry", "operator", _dead, {}),
    ("/jobs/{id}/replay", "operator", _dead, {"payload": '{{"edited": true}}'}),
    ("/jobs/{id}/cancel", "operator", _queued, {}),
    ("/jobs/{id}/delete", "operator", _queued, {}),
    ("/jobs/{id}/delete", "admin", _dead, {}),  # a dead job: that is a dead-letter purge
    ("/jobs/retry", "operator", _dead, {"ids": "{id}"}),
    ("/jobs/delete", "operator", _queued, {"ids": "{id}"}),
    ("/dead/replay", "operator", _dead, {"scope": "all", "queue": "{name}"}),
    ("/dead/purge", "admin", _dead, {"queue": "{name}"}),
    ("/schedules/{name}/pause", "operator", _schedule, {}),
    ("/schedules/{name}/resume", "operator", _paused_schedule, {}),
    ("/schedules/{name}/trigger", "operator", _schedule, {}),
]


def test_the_dashboard_matrix_covers_every_action() -> None:
    from starlette.routing import Route

    from conveyor.config import load_settings

    app = create_app(load_settings(None, env={}))
    posted = {
        route.path
        for route in app.routes
        if isinstance(route, Route) and "POST" in (route.methods or set())
    }
    assert posted - {"/login", "/logout"} == {path for path, *_ in DASHBOARD_ACTIONS}


@pytest.mark.parametrize(
    ("path", "role", "setup", "fields"),
    DASHBOARD_ACTIONS,
    ids=[f"{path} {setup.__name__[1:]}" for path, _, setup, _ in DASHBOARD_ACTIONS],
)
async def test_dashboard_role_matrix(
    path: str,
    role: str,
    setup: Callable[[Db, int], dict[str, str]],
    fields: dict[str, str],
    settings_factory: Callable[..., Settings],
    db: Db,
) -> None:
    tokens = [{"name": f"{r}-bot", "role": r, "token": t} for r, t in ROLE_TOKENS.items()]
    settings = web_settings(settings_factory, **{"web.tokens": tokens})
    for n, who in enumerate((None, "viewer", "operator", "admin")):
        target = setup(db, n)
        before = db.execute(b"SELECT count(*) FROM audit_log").fetchone()
        async with serving(settings) as http:
            if who is not None:
                assert (await log_in(http, token=ROLE_TOKENS[who])).status_code == 303
            csrf = csrf_of((await http.get("/login", follow_redirects=True)).text)
            data = {key: value.format(**target) for key, value in fields.items()}
            reply = await http.post(path.format(**target), data={**data, "csrf_token": csrf})
        after = db.execute(b"SELECT count(*) FROM audit_log").fetchone()
        if who is None:
            assert reply.status_code in (303, 403), reply.text  # to the login page
            assert reply.status_code == 403 or reply.headers["location"].startswith("/login")
        elif RANK[who] < RANK[role]:
            assert reply.status_code == 403, (who, reply.text)
        else:
            assert reply.status_code == 303, (who, reply.text)
            assert "error" not in reply.headers.get("location", "")
        changed = after != before
        assert changed == (who is not None and RANK[who] >= RANK[role]), who
