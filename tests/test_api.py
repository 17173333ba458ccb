"""The JSON admin API over ASGI, against real PostgreSQL and Redis, on fabricated rows.

httpx's ASGITransport drives the app (starlette's TestClient warns about httpx under
-W error); the app's lifespan, which opens the Admin, is entered by the fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from conveyor.web.auth import Authenticator, csrf_token
from conveyor.web.sessions import start_session
from tests.factories import (
    add_batch,
    add_history,
    add_job,
    add_schedule,
    add_worker,
    set_worker_health,
)

ROLES = ("viewer", "operator", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
TOKENS = {role: f"{role}-secret-token-0123456789" for role in ROLES}
Db = psycopg.Connection[Any]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    tokens = [{"name": f"{role}-bot", "token": TOKENS[role], "role": role} for role in ROLES]
    result = settings_factory(**{"web.tokens": tokens})
    migrate(result.database.url, result.database.schema_name)
    return result


async def login_for_session_tests(request: Request) -> Response:
    """Test-only route: start a dashboard-style session for a configured token."""
    principal = Authenticator(request.app.state.settings).from_token(request.path_params["t"])
    assert principal is not None
    await start_session(request, principal)
    return JSONResponse({"csrf": csrf_token(request)})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    app.router.routes.insert(0, Route("/test-login/{t}", login_for_session_tests))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield http


def bearer(who: str | None) -> dict[str, str]:
    if who is None:
        return {}
    return {"Authorization": f"Bearer {TOKENS.get(who, 'not-a-configured-token-000')}"}


def snapshot(db: Db) -> tuple[list[tuple[Any, ...]], ...]:
    """Everything an API call could change in PostgreSQL."""
    return (
        db.execute(
            b"SELECT id, status, attempt, cancel_requested FROM jobs ORDER BY id"
        ).fetchall(),
        db.execute(b"SELECT name, is_active FROM job_queues ORDER BY name").fetchall(),
        db.execute(b"SELECT count(*) FROM audit_log").fetchall(),
    )


def audit_rows(db: Db, after: int = 0) -> list[tuple[Any, ...]]:
    return db.execute(
        b"SELECT actor, action, target, result FROM audit_log WHERE id > %s ORDER BY id", (after,)
    ).fetchall()


def last_audit_id(db: Db) -> int:
    row = db.execute(b"SELECT coalesce(max(id), 0) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


# -- the auth matrix: every route, every kind of caller ---------------------------------------


def dead_target(db: Db, n: int) -> dict[str, str]:
    """A fresh dead job in a fresh queue for each call, so every allowed call succeeds."""
    queue = f"m{n}"
    return {"queue": queue, "job_id": str(add_job(db, queue=queue, status="dead"))}


def queued_target(db: Db, n: int) -> dict[str, str]:
    queue = f"m{n}"
    return {"queue": queue, "job_id": str(add_job(db, queue=queue))}


def paused_target(db: Db, n: int) -> dict[str, str]:
    target = queued_target(db, n)
    db.execute(
        b"UPDATE job_queues SET is_active = false, paused_at = now() WHERE name = %s",
        (target["queue"],),
    )
    return target


def schedule_target(db: Db, n: int) -> dict[str, str]:
    target = queued_target(db, n)
    add_schedule(db, f"s{n}", queue=target["queue"])
    return {**target, "schedule": f"s{n}"}


def paused_schedule_target(db: Db, n: int) -> dict[str, str]:
    target = schedule_target(db, n)
    db.execute(b"UPDATE schedules SET paused = true WHERE name = %s", (target["schedule"],))
    return target


def batch_target(db: Db, n: int) -> dict[str, str]:
    target = dead_target(db, n)
    return {**target, "batch_id": str(add_batch(db, [UUID(target["job_id"])]))}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # as in the OpenAPI document
    role: str
    action: str | None = None  # the audit_log action an allowed call writes
    body: Callable[[dict[str, str]], Any] | None = None
    setup: Callable[[Db, int], dict[str, str]] = dead_target

    def audit_target(self, target: dict[str, str]) -> str:
        if "{schedule}" in self.path:
            return f"schedule:{target['schedule']}"
        if "{job_id}" in self.path:
            return f"job:{target['job_id']}"
        if self.path.startswith("/api/jobs/"):
            return "jobs:1"
        return f"queue:{target['queue']}"


def ids_body(target: dict[str, str]) -> Any:
    return {"ids": [target["job_id"]]}


CASES = [
    Case("GET", "/api/health", "viewer"),
    Case("GET", "/api/stats", "viewer"),
    Case("GET", "/api/workers", "viewer"),
    Case("GET", "/api/queues/{queue}/peek", "viewer"),
    Case("GET", "/api/jobs", "viewer"),
    Case("GET", "/api/jobs/{job_id}", "viewer"),
    Case("GET", "/api/audit", "admin"),
    Case("GET", "/api/alerts", "viewer"),
    Case("GET", "/api/metrics/history", "viewer"),
    Case("GET", "/api/scaling", "viewer"),
    Case("POST", "/api/jobs/{job_id}/retry", "operator", "retry"),
    Case("POST", "/api/jobs/{job_id}/cancel", "operator", "cancel", setup=queued_target),
    Case(
        "POST",
        "/api/jobs/{job_id}/replay",
        "operator",
        "replay_edited",
        lambda t: {"payload": {"edited": True}},
    ),
    # Deleting a dead job is a dead-letter purge: see the test of finding 4 below.
    Case("DELETE", "/api/jobs/{job_id}", "operator", "delete", setup=queued_target),
    Case("POST", "/api/jobs/retry", "operator", "retry_jobs", ids_body),
    Case("POST", "/api/jobs/delete", "operator", "delete_jobs", ids_body, queued_target),
    Case("POST", "/api/queues/{queue}/pause", "operator", "pause"),
    Case("POST", "/api/queues/{queue}/resume", "operator", "resume", setup=paused_target),
    Case("POST", "/api/dead/retry", "operator", "retry_dead", lambda t: {"queue": t["queue"]}),
    Case(
        "POST",
        "/api/dead/purge",
        "admin",
        "purge_dead",
        lambda t: {"queue": t["queue"], "dry_run": False},
    ),
    Case("POST", "/api/queues/{queue}/clear-failed", "admin", "clear_failed"),
    Case("GET", "/api/schedules", "viewer"),
    Case("GET", "/api/limits", "viewer"),
    Case("GET", "/api/batches", "viewer"),
    Case("GET", "/api/batches/{batch_id}", "viewer", setup=batch_target),
    Case(
        "POST",
        "/api/schedules/{schedule}/pause",
        "operator",
        "pause_schedule",
        setup=schedule_target,
    ),
    Case(
        "POST",
        "/api/schedules/{schedule}/resume",
        "operator",
        "resume_schedule",
        setup=paused_schedule_target,
    ),
    Case(
        "POST",
        "/api/schedules/{schedule}/trigger",
        "operator",
        "trigger_schedule",
        setup=schedule_target,
    ),
]
CALLERS = (None, "bad", *ROLES)


async def test_the_matrix_covers_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    documented = {
        (method.upper(), path, item.get("x-required-role"))
        for path, methods in document["paths"].items()
        for method, item in methods.items()
    }
    expected = {(case.method, case.path, case.role) for case in CASES}
    assert documented == expected | {("GET", "/api/openapi.json", None)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
async def test_auth_matrix(case: Case, client: httpx.AsyncClient, db: Db) -> None:
    for n, who in enumerate(CALLERS):
        target = case.setup(db, n)
        before, mark = snapshot(db), last_audit_id(db)
        response = await client.request(
            case.method,
            case.path.format(**target),
            headers=bearer(who),
            json=case.body(target) if case.body else None,
        )
        if who is None or who not in RANK:
            assert response.status_code == 401, (who, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
        elif RANK[who] < RANK[case.role]:
            assert response.status_code == 403, (who, response.text)
            assert case.role in response.json()["error"]
        else:
            assert response.status_code == 200, (who, response.text)
        if response.status_code != 200:
            assert set(response.json()) == {"error"}
            assert snapshot(db) == before, f"a refused call by {who} changed something"
        elif case.action is not None:
            assert audit_rows(db, mark) == [
                (f"token:{who}-bot", case.action, case.audit_target(target), "ok")
            ]
        else:
            assert snapshot(db) == before, "a read changed something"


# -- behaviour ---------------------------------------------------------------------------------


async def call(
    client: httpx.AsyncClient, method: str, url: str, who: str = "admin", **kwargs: Any
) -> httpx.Response:
    return await client.request(method, url, headers=bearer(who), **kwargs)


async def test_health_has_the_specified_shape(client: httpx.AsyncClient, db: Db) -> None:
    add_job(db, queue="emails")
    response = await call(client, "GET", "/api/health", "viewer")
    assert response.status_code == 200
    body = response.json()
    parts = ("redis", "database", "queues", "workers", "performance")
    assert set(body) == {"timestamp", "overall_status", "mode", "mode_reason", *parts}
    assert (body["mode"], body["mode_reason"]) == ("normal", None)
    assert body["overall_status"] in ("healthy", "warning", "critical")
    assert all(body[part]["status"] in ("healthy", "warning", "critical") for part in parts)
    assert body["redis"]["status"] == body["database"]["status"] == "healthy"
    assert [queue["name"] for queue in body["queues"]["queues"]] == ["emails"]


async def test_retry_a_dead_job_then_conflict(client: httpx.AsyncClient, db: Db) -> None:
    job = add_job(db, status="dead", attempt=3)
    response = await call(client, "POST", f"/api/jobs/{job}/retry", "operator")
    assert response.status_code == 200
    assert response.json() | {"message": ""} == {
        "action": "retry",
        "job_id": str(job),
        "changed": True,
        "previous_status": "dead",
        "status": "queued",
        "message": "",
    }
    assert snapshot(db)[0] == [(job, "queued", 0, False)]
    again = await call(client, "POST", f"/api/jobs/{job}/retry", "operator")
    assert again.status_code == 409
    assert "already queued" in again.json()["error"]
    missing = await call(client, "POST", f"/api/jobs/{uuid4()}/retry", "operator")
    assert missing.status_code == 404


async def test_pause_and_resume(client: httpx.AsyncClient, db: Db) -> None:
    add_job(db, queue="emails")
    first = await call(client, "POST", "/api/queues/emails/pause", "operator")
    assert first.status_code == 200
    assert first.json()["changed"] is True
    assert first.json()["redis_synced"] is True
    stats = (await call(client, "GET", "/api/stats", "viewer")).json()
    assert [(q["name"], q["paused"]) for q in stats["queues"]] == [("emails", True)]
    second = await call(client, "POST", "/api/queues/emails/pause", "operator")
    assert second.json()["changed"] is False
    resumed = await call(client, "POST", "/api/queues/emails/resume", "operator")
    assert resumed.json()["changed"] is True
    assert snapshot(db)[1] == [("emails", True)]
    assert [(row[1], row[3]) for row in audit_rows(db)] == [
        ("pause", "ok"),
        ("pause", "noop"),
        ("resume", "ok"),
    ]
    unknown = await call(client, "POST", "/api/queues/nosuch/pause", "operator")
    assert unknown.status_code == 404
    assert "nosuch" in unknown.json()["error"]


async def test_purge_is_a_dry_run_unless_told_otherwise(client: httpx.AsyncClient, db: Db) -> None:
    dead = {add_job(db, status="dead"), add_job(db, status="dead")}
    kept = add_job(db, queue="other", status="dead")
    waiting = add_job(db)
    dry = await call(client, "POST", "/api/dead/purge", json={"queue": "q"})
    assert dry.status_code == 200
    assert (dry.json()["dry_run"], dry.json()["count"]) == (True, 2)
    assert {UUID(job_id) for job_id in dry.json()["sample"]} == dead
    assert len(snapshot(db)[0]) == 4
    assert audit_rows(db) == []  # a dry run changes nothing, so it is not audited
    real = await call(client, "POST", "/api/dead/purge", json={"queue": "q", "dry_run": False})
    assert (real.json()["dry_run"], real.json()["count"]) == (False, 2)
    assert {row[0] for row in snapshot(db)[0]} == {kept, waiting}
    assert audit_rows(db) == [("token:admin-bot", "purge_dead", "queue:q", "ok")]
    cleared = await call(client, "POST", "/api/queues/other/clear-failed")
    assert cleared.json()["count"] == 1
    assert {row[0] for row in snapshot(db)[0]} == {waiting}


async def test_replay_dead_jobs(client: httpx.AsyncClient, db: Db) -> None:
    first, second = add_job(db, status="dead", attempt=3), add_job(db, status="dead", attempt=3)
    dry = await call(client, "POST", "/api/dead/retry", "operator", json={"dry_run": True})
    assert (dry.json()["count"], dry.json()["dry_run"]) == (2, True)
    assert audit_rows(db) == []
    one = await call(client, "POST", "/api/dead/retry", "operator", json={"ids": [str(first)]})
    assert one.json()["count"] == 1
    assert dict((row[0], row[1]) for row in snapshot(db)[0]) == {first: "queued", second: "dead"}
    rest = await call(client, "POST", "/api/dead/retry", "operator")  # no body: all dead jobs
    assert rest.json()["count"] == 1
    assert [row[2] for row in audit_rows(db)] == ["dead", "dead"]


async def test_bulk_retry_and_delete_report_skipped(client: httpx.AsyncClient, db: Db) -> None:
    dead, waiting, missing = add_job(db, status="dead"), add_job(db), uuid4()
    ids = [str(dead), str(waiting), str(missing)]
    retried = await call(client, "POST", "/api/jobs/retry", "operator", json={"ids": ids})
    assert retried.json()["count"] == 1
    assert set(retried.json()["skipped"]) == {str(waiting), str(missing)}
    deleted = await call(client, "POST", "/api/jobs/delete", "operator", json={"ids": ids})
    assert deleted.json()["count"] == 2
    assert snapshot(db)[0] == []


async def test_finding_4_deleting_dead_jobs_is_a_purge_for_admins_only(
    client: httpx.AsyncClient, db: Db
) -> None:
    kept = []
    for who in ("operator", "admin"):
        dead = add_job(db, status="dead")
        kept.append(dead)
        before, mark = snapshot(db), last_audit_id(db)
        refused_or_done = await call(client, "DELETE", f"/api/jobs/{dead}", who)
        if who == "operator":
            assert refused_or_done.status_code == 403, refused_or_done.text
            assert "admin" in refused_or_done.json()["error"]
            assert snapshot(db) == before
        else:
            assert refused_or_done.status_code == 200
            assert audit_rows(db, mark)[0][:2] == ("token:admin-bot", "delete")
            kept.remove(dead)
    deads = [add_job(db, status="dead") for _ in range(3)]
    waiting = add_job(db)
    ids = [str(job) for job in [*deads, waiting]]
    mark = last_audit_id(db)
    bulk = await call(client, "POST", "/api/jobs/delete", "operator", json={"ids": ids})
    assert bulk.status_code == 200
    assert bulk.json()["count"] == 1, "only the waiting job goes"
    assert set(bulk.json()["skipped"]) == {str(job) for job in deads}
    assert "admin" in bulk.json()["message"]
    remaining = {row[0] for row in snapshot(db)[0]}
    assert remaining == {*deads, *kept}
    bulk = await call(client, "POST", "/api/jobs/delete", "admin", json={"ids": ids})
    assert bulk.json()["count"] == 3
    details = db.execute(
        b"SELECT detail FROM audit_log WHERE id > %s AND action = 'delete_jobs' ORDER BY id",
        (mark,),
    ).fetchall()
    assert [sorted(row[0]["jobs"], key=lambda job: job["id"]) for row in details] == [
        [{"id": str(waiting), "previous_status": "queued"}],
        [{"id": str(job), "previous_status": "dead"} for job in sorted(deads)],
    ]


async def test_reads(client: httpx.AsyncClient, db: Db) -> None:
    jobs = [add_job(db, queue="emails") for _ in range(3)]
    add_job(db, queue="emails", status="dead")
    page = (await call(client, "GET", "/api/jobs?queue=emails&status=queued&limit=2")).json()
    assert [item["id"] for item in page["items"]] == [str(jobs[2]), str(jobs[1])]
    rest = await call(
        client, "GET", f"/api/jobs?queue=emails&status=queued&cursor={page['next_cursor']}"
    )
    assert [item["id"] for item in rest.json()["items"]] == [str(jobs[0])]
    assert rest.json()["next_cursor"] is None
    peek = (await call(client, "GET", "/api/queues/emails/peek?n=2", "viewer")).json()
    assert [item["id"] for item in peek] == [str(jobs[0]), str(jobs[1])]
    detail = (await call(client, "GET", f"/api/jobs/{jobs[0]}", "viewer")).json()
    assert (detail["payload"], detail["attempts"]) == ({"n": 1}, [])
    assert "why_waiting" in detail
    assert (await call(client, "GET", "/api/workers", "viewer")).json() == []
    await call(client, "POST", "/api/queues/emails/pause", "operator")
    audit = (await call(client, "GET", "/api/audit?limit=5")).json()
    assert [(e["actor"], e["action"], e["target"]) for e in audit] == [
        ("token:operator-bot", "pause", "queue:emails")
    ]


async def test_metrics_history_read(client: httpx.AsyncClient, db: Db) -> None:
    add_history(db, 1, "emails", completed=5, failed=2)
    add_history(db, 3, "emails", lane="high", completed=1)
    reply = await call(client, "GET", "/api/metrics/history?window=1h&queue=emails", "viewer")
    history = reply.json()
    assert (history["window"], history["resolution"], history["queue"]) == (
        "1h",
        "minute",
        "emails",
    )
    assert len(history["points"]) in (60, 61)
    assert [p["completed"] for p in history["points"][-3:]] == [1, 0, 5]
    assert (await call(client, "GET", "/api/metrics/history?window=7d")).json()["resolution"] == (
        "hour"
    )
    missing = await call(client, "GET", "/api/metrics/history?queue=nowhere")
    assert missing.status_code == 404 and "nowhere" in missing.json()["error"]


async def test_payload_with_huge_integers_is_served(client: httpx.AsyncClient, db: Db) -> None:
    job = add_job(db, payload={"big": 2**80})
    response = await call(client, "GET", f"/api/jobs/{job}", "viewer")
    assert response.status_code == 200
    assert response.json()["payload"] == {"big": 2**80}


# A fixed id: parametrized ids must be the same in every pytest-xdist process.
UNKNOWN_JOB = "00000000-0000-4000-8000-000000000001"


BAD_INPUT: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/jobs/not-a-uuid", None, "not a job id"),
    ("POST", "/api/jobs/not-a-uuid/retry", None, "not a job id"),
    ("POST", "/api/jobs/123/cancel", None, "not a job id"),
    ("DELETE", "/api/jobs/123", None, "not a job id"),
    ("GET", "/api/jobs?status=lost", None, "'status'"),
    ("GET", "/api/jobs?limit=0", None, "'limit'"),
    ("GET", "/api/jobs?limit=-1", None, "'limit'"),
    ("GET", "/api/jobs?limit=1001", None, "'limit'"),
    ("GET", "/api/jobs?limit=ten", None, "'limit'"),
    ("GET", "/api/jobs?limit=1&limit=2", None, "more than once"),
    ("GET", "/api/jobs?statuss=dead", None, "unknown query parameter 'statuss'"),
    ("GET", "/api/jobs?min_age=-5", None, "'min_age'"),
    ("GET", "/api/jobs?max_age=nan", None, "'max_age'"),
    ("GET", "/api/jobs?max_age=212662210471", None, "'max_age'"),  # fuzz-found overflow
    ("GET", "/api/jobs?min_age=10&max_age=5", None, "min_age"),
    ("GET", "/api/jobs?cursor=garbage", None, "cursor"),
    ("GET", "/api/jobs?text=a%00b", None, "NUL"),
    ("GET", "/api/jobs?queue=no%20spaces", None, "'queue'"),
    ("GET", "/api/queues/q/peek?n=0", None, "'n'"),
    ("GET", "/api/queues/q/peek?lane=middle", None, "'lane'"),
    ("GET", "/api/audit?limit=5000", None, "'limit'"),
    ("GET", "/api/stats?verbose=1", None, "unknown query parameter"),
    ("GET", "/api/metrics/history?window=soon", None, "'window'"),
    ("GET", "/api/metrics/history?window=10s", None, "'window'"),
    ("GET", "/api/metrics/history?queue=no%20spaces", None, "'queue'"),
    ("POST", "/api/jobs/retry", b"{not json", "not valid JSON"),
    ("POST", "/api/jobs/retry", b"[]", "object"),
    ("POST", "/api/jobs/retry", b"", "'ids'"),
    ("POST", "/api/jobs/retry", {"ids": "abc"}, "'ids'"),
    ("POST", "/api/jobs/retry", {"ids": []}, "'ids'"),
    ("POST", "/api/jobs/delete", {"ids": ["nope"]}, "'ids.0'"),
    ("POST", "/api/jobs/delete", {"ids": [1]}, "'ids.0'"),
    ("POST", "/api/jobs/delete", {"ids": [str(uuid4())], "all": True}, "unknown body field"),
    ("POST", "/api/dead/purge", {"dry_run": "false"}, "'dry_run'"),
    ("POST", "/api/dead/purge", {"dryrun": False}, "unknown body field 'dryrun'"),
    ("POST", "/api/dead/purge", {"queue": 5, "dry_run": False}, "'queue'"),
    ("POST", "/api/dead/retry", {"task": "a\x00b"}, "NUL"),
    ("POST", "/api/dead/retry", {"queue": "bad queue!"}, "'queue'"),
    ("POST", "/api/dead/retry", {"ids": ["x"] * 10_001}, "'ids'"),
    ("POST", f"/api/jobs/{UNKNOWN_JOB}/replay", b"", "'payload'"),
    ("POST", f"/api/jobs/{UNKNOWN_JOB}/replay", {"payload": 1, "dry_run": True}, "unknown body"),
    ("POST", f"/api/jobs/{UNKNOWN_JOB}/replay", {"payload": {"a": "b\x00"}}, "NUL"),
    ("POST", f"/api/jobs/{UNKNOWN_JOB}/replay", {"payload": 2**70}, "not JSON"),
    ("POST", "/api/jobs/not-a-uuid/replay", {"payload": 1}, "not a job id"),
    ("POST", "/api/queues/bad%20queue/pause", None, "queue name"),
    ("POST", "/api/queues/q:high/clear-failed", None, "lane names"),
]


@pytest.mark.parametrize(("method", "url", "body", "fragment"), BAD_INPUT)
async def test_bad_input_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient, db: Db, method: str, url: str, body: Any, fragment: str
) -> None:
    add_job(db, status="dead")
    add_job(db)
    before = snapshot(db)
    content = body if isinstance(body, bytes) else None
    data = None if isinstance(body, bytes) else body
    response = await call(client, method, url, content=content, json=data)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert snapshot(db) == before


async def test_oversized_body_is_refused(client: httpx.AsyncClient, db: Db) -> None:
    add_job(db, status="dead")
    before = snapshot(db)
    body = b'{"ids": [' + b'"00000000-0000-0000-0000-000000000000",' * 30_000 + b'""]}'
    response = await call(client, "POST", "/api/jobs/delete", content=body)
    assert response.status_code == 413
    assert snapshot(db) == before


async def test_unknown_paths_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    missing = await call(client, "GET", "/api/nothing-here")
    assert (missing.status_code, set(missing.json())) == (404, {"error"})
    wrong = await call(client, "PUT", "/api/stats")
    assert (wrong.status_code, set(wrong.json())) == (405, {"error"})
    basic = await client.get("/api/stats", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401


async def test_session_cookies_need_the_csrf_token(client: httpx.AsyncClient, db: Db) -> None:
    add_job(db, queue="emails")
    login = await client.get(f"/test-login/{TOKENS['operator']}")
    csrf = login.json()["csrf"]
    assert (await client.get("/api/stats")).status_code == 200  # reads need no token
    refused = await client.post("/api/queues/emails/pause")
    assert refused.status_code == 403
    cross = await client.post(
        "/api/queues/emails/pause", headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert audit_rows(db) == []
    allowed = await client.post("/api/queues/emails/pause", headers={"X-CSRF-Token": csrf})
    assert allowed.status_code == 200
    assert audit_rows(db) == [("token:operator-bot", "pause", "queue:emails", "ok")]


# -- the OpenAPI document ----------------------------------------------------------------------


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(value) for value in node))
    return set()


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/openapi.json")  # served without credentials
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert refs(document) and document["paths"], "an empty document would check nothing"
    for ref in refs(document):
        section, kind, name = ref.removeprefix("#/").split("/")
        assert name in document[section][kind], ref
    for path, methods in document["paths"].items():
        for method, item in methods.items():
            codes = set(item["responses"])
            assert {"200", "400"} <= codes, (method, path)
            if item["security"]:
                assert {"401", "403"} <= codes, (method, path)
    jobs = document["paths"]["/api/jobs"]["get"]
    assert [p["name"] for p in jobs["parameters"]] == [
        "queue",
        "status",
        "lane",
        "min_age",
        "max_age",
        "text",
        "tenant",
        "tag",
        "meta",
        "cursor",
        "limit",
    ]
    detail = document["components"]["schemas"]["JobDetail"]
    assert {"payload", "attempts", "why_waiting"} <= set(detail["required"])


def test_finding_5_a_missing_session_secret_is_warned_about_loudly(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="conveyor.web"):
        create_app(settings)
    assert [r.levelname for r in caplog.records if "web.session_secret" in r.getMessage()] == [
        "WARNING"
    ]


async def test_workers_report_their_health(client: httpx.AsyncClient, db: Db) -> None:
    add_worker(db, "w-1", ["emails"])
    set_worker_health(db, "w-1", breakers_open=("emails",))
    (worker,) = (await call(client, "GET", "/api/workers", "viewer")).json()
    assert worker["id"] == "w-1" and worker["uptime_seconds"] >= 3720
    assert (worker["rss_bytes"], worker["jobs_processed"], worker["jobs_failed"]) == (
        123 << 20,
        40,
        4,
    )
    assert worker["busy_seconds"] == 0.492 and abs(worker["avg_processing_seconds"] - 0.0123) < 1e-9
    assert worker["postgres_only"] is False and worker["breakers_open"] == ["emails"]
    document = (await client.get("/api/openapi.json")).json()
    described = document["components"]["schemas"]["WorkerInfo"]["properties"]
    for name in ("uptime_seconds", "rss_bytes", "avg_processing_seconds", "breakers_open"):
        assert name in described, name


async def test_expired_jobs_are_listed_filtered_and_counted(
    client: httpx.AsyncClient, db: Db
) -> None:
    expired = add_job(db, queue="emails", status="expired")
    add_job(db, queue="emails", status="cancelled")
    page = (await call(client, "GET", "/api/jobs?status=expired", "viewer")).json()
    assert [(item["id"], item["status"]) for item in page["items"]] == [(str(expired), "expired")]
    stats = (await call(client, "GET", "/api/stats", "viewer")).json()
    assert [(q["name"], q["expired"], q["dead"]) for q in stats["queues"]] == [("emails", 1, 0)]
