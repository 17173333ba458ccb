"""Tenant isolation (issue 11 item 8): jobs carry a tenant from enqueue, and API tokens and
dashboard users scoped to tenants or queues see and act on nothing else. The matrix runs
every API route for a tenant-scoped caller on its own tenant's job, on another tenant's
job, and for an unscoped caller (test_tenants_dashboard.py does the same for every
dashboard action)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from conveyor import Conveyor
from conveyor.admin import Admin
from conveyor.config import Settings
from conveyor.errors import EnqueueError
from conveyor.scope import Scope
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from tests.factories import add_batch, add_job, add_log, add_schedule, add_worker

Db = psycopg.Connection[Any]
OWN, OTHER = "acme", "globex"
TOKENS = {
    "acme": "acme-scoped-admin-token-0123",  # admin role, tenant acme
    "all": "unscoped-admin-token-0123456",
    "emails": "queue-scoped-admin-token-01",  # admin role, queue emails
}


def scoped_tokens() -> list[dict[str, Any]]:
    return [
        {"name": "acme-bot", "token": TOKENS["acme"], "role": "admin", "tenants": [OWN]},
        {"name": "all-bot", "token": TOKENS["all"], "role": "admin"},
        {"name": "mail-bot", "token": TOKENS["emails"], "role": "admin", "queues": ["emails"]},
    ]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    result = settings_factory(**{"web.tokens": scoped_tokens()})
    migrate(result.database.url, result.database.schema_name)
    return result


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        yield http


def jobs_snapshot(db: Db) -> list[tuple[Any, ...]]:
    return (
        db.execute(
            b"SELECT id, tenant, status, attempt, cancel_requested FROM jobs ORDER BY id"
        ).fetchall()
        + db.execute(b"SELECT name, is_active FROM job_queues ORDER BY name").fetchall()
        + db.execute(b"SELECT name, paused FROM schedules ORDER BY name").fetchall()
    )


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_stores_the_tenant(app: Conveyor, db: Db) -> None:
    @app.task(queue="emails")
    def send(payload: Any) -> None: ...

    one = app.enqueue(send, {"n": 1}, tenant="acme")
    many = app.enqueue_many(send, [{"n": 2}, {"n": 3}], tenant="acme:eu-1")
    plain = send.enqueue({"n": 4})
    through_task = send.enqueue({"n": 5}, tenant="globex")
    assert app.get_job(one).tenant == "acme"
    assert [app.get_job(job).tenant for job in many] == ["acme:eu-1", "acme:eu-1"]
    assert app.get_job(plain).tenant is None
    assert app.get_job(through_task).tenant == "globex"


async def test_async_enqueue_stores_the_tenant(app: Conveyor) -> None:
    @app.task(queue="emails")
    def send(payload: Any) -> None: ...

    one = await app.aenqueue(send, {}, tenant="acme")
    many = await app.aenqueue_many(send, [{}, {}], tenant="globex")
    assert (await app.aget_job(one)).tenant == "acme"
    assert {(await app.aget_job(job)).tenant for job in many} == {"globex"}
    await app.aclose()


@pytest.mark.parametrize("bad", ["", "a b", "x" * 101, "a::b", ":a", 7, "tenant\x00"])
def test_a_bad_tenant_is_refused_and_writes_nothing(app: Conveyor, db: Db, bad: Any) -> None:
    @app.task(queue="emails")
    def send(payload: Any) -> None: ...

    with pytest.raises(EnqueueError, match="tenant"):
        app.enqueue(send, {}, tenant=bad)
    with pytest.raises(EnqueueError, match="tenant"):
        app.enqueue_many(send, [{}, {}], tenant=bad)
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (0,)


def test_the_database_refuses_a_bad_tenant_too(db: Db) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        add_job(db, tenant="not a name")


def test_the_tenant_listing_index_is_partial(db: Db) -> None:
    row = db.execute(
        # This schema's index only: another test's schema may be being dropped beside this
        # one, and describing its index then fails ("cache lookup failed").
        b"SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_tenant_list_idx'"
        b" AND schemaname = current_schema()"
    ).fetchone()
    assert row is not None
    assert "WHERE ((tenant IS NOT NULL)" in row[0]


@pytest.mark.parametrize("names", [[], ["a b"], ["x" * 101]])
def test_a_scope_must_name_something_valid(
    settings_factory: Callable[..., Settings], names: list[str]
) -> None:
    token = {"name": "t", "token": TOKENS["all"], "role": "viewer", "tenants": names}
    with pytest.raises(ValueError, match="tenants"):
        settings_factory(**{"web.tokens": [token]})


# -- the API matrix: every route x {own tenant, other tenant, unscoped} ------------------------


def target(db: Db, n: int, tenant: str, status: str = "dead") -> dict[str, str]:
    """A job of `tenant` alone in a fresh queue, and a schedule of that queue named as it
    is (the dashboard's matrix formats both paths with the queue's name)."""
    queue = f"t{n}"
    add_schedule(db, queue, queue=queue, paused=True)  # paused: resume changes something
    job = add_job(db, queue, status=status, tenant=tenant)
    batch_id = str(add_batch(db, [job]))
    return {"queue": queue, "job_id": str(job), "schedule": queue, "batch_id": batch_id}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    # What a tenant-scoped caller gets for another tenant's job: 404, 403, or 200 with
    # nothing of it in the answer ("hidden") or with the id skipped ("skipped").
    other: int | str
    status: str = "dead"
    body: Callable[[dict[str, str]], Any] | None = None
    # What it gets for its own (queue-wide actions are refused to tenant-scoped callers).
    own: int = 200


def ids(t: dict[str, str]) -> Any:
    return {"ids": [t["job_id"]]}


CASES = [
    Case("GET", "/api/health", "hidden"),
    Case("GET", "/api/stats", "hidden"),
    Case("GET", "/api/workers", "hidden"),
    Case("GET", "/api/queues/{queue}/peek", 404, "queued"),
    Case("GET", "/api/jobs", "hidden"),
    Case("GET", "/api/jobs/{job_id}", 404),
    Case("GET", "/api/audit", "hidden"),
    Case("GET", "/api/alerts", "hidden"),
    # History is kept per queue, not per tenant: refused to every tenant-scoped caller.
    Case("GET", "/api/metrics/history", 403, own=403),
    Case("GET", "/api/scaling", "hidden"),
    Case("POST", "/api/jobs/{job_id}/retry", 404),
    Case("POST", "/api/jobs/{job_id}/cancel", 404, "queued"),
    Case("POST", "/api/jobs/{job_id}/replay", 404, body=lambda t: {"payload": {"n": 2}}),
    Case("DELETE", "/api/jobs/{job_id}", 404),
    Case("POST", "/api/jobs/retry", "skipped", body=ids),
    Case("POST", "/api/jobs/delete", "skipped", "queued", ids),
    Case("POST", "/api/queues/{queue}/pause", 403, "queued", own=403),
    Case("POST", "/api/queues/{queue}/resume", 403, "queued", own=403),
    Case("POST", "/api/dead/retry", 404, body=lambda t: {"queue": t["queue"]}),
    Case("POST", "/api/dead/purge", 404, body=lambda t: {"queue": t["queue"], "dry_run": False}),
    Case("POST", "/api/queues/{queue}/clear-failed", 404),
    # Schedules belong to no tenant: a tenant-scoped caller sees none and changes none.
    Case("GET", "/api/schedules", "hidden"),
    Case("POST", "/api/schedules/{schedule}/pause", 403, own=403),
    Case("POST", "/api/schedules/{schedule}/resume", 403, own=403),
    Case("POST", "/api/schedules/{schedule}/trigger", 403, own=403),
    # Limits belong to no tenant either.
    Case("GET", "/api/limits", "hidden"),
    # A batch may span tenants and queues: refused to every scoped caller.
    Case("GET", "/api/batches", 403, own=403),
    Case("GET", "/api/batches/{batch_id}", 403, own=403),
]


async def test_the_tenant_matrix_covers_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    documented = {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }
    assert documented == {(c.method, c.path) for c in CASES} | {("GET", "/api/openapi.json")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
async def test_tenant_matrix(case: Case, client: httpx.AsyncClient, db: Db) -> None:
    # Something of the other tenant that every read could leak: a worker, an audit row.
    add_worker(db, "worker-of-globex", ["t1", "t2"])
    for n, (who, tenant) in enumerate((("acme", OWN), ("acme", OTHER), ("all", OTHER))):
        t = target(db, n, tenant, case.status)
        if n == 1:  # an audit row about the other tenant's job, by an unscoped caller
            await client.post(
                f"/api/jobs/{add_job(db, 't1', status='dead', tenant=OTHER)}/retry",
                headers={"Authorization": f"Bearer {TOKENS['all']}"},
            )
        before = jobs_snapshot(db)
        reply = await client.request(
            case.method,
            case.path.format(**t),
            headers={"Authorization": f"Bearer {TOKENS[who]}"},
            json=case.body(t) if case.body else None,
        )
        if who == "all" or tenant == OWN:
            expected = 200 if who == "all" else case.own
            assert reply.status_code == expected, (who, tenant, reply.text)
            if expected == 200 and case.method == "GET" and "{" in case.path:
                assert t["job_id"] in reply.text
            continue
        # A tenant-scoped caller and another tenant's job: nothing of it, nothing changed.
        assert jobs_snapshot(db) == before, "a call outside the scope changed something"
        if isinstance(case.other, int):
            assert reply.status_code == case.other, reply.text
            assert set(reply.json()) == {"error"}
            continue
        assert reply.status_code == 200, reply.text
        if case.other == "skipped":
            assert reply.json()["count"] == 0
            assert reply.json()["skipped"] == [t["job_id"]]
        else:
            for secret in (t["job_id"], t["queue"], "t1", "worker-of-globex", OTHER):
                assert secret not in reply.text, (secret, reply.text)


# -- what a scoped caller sees -----------------------------------------------------------------


def scoped_admin(admin: Admin, tenants: list[str] | None = None, **kw: Any) -> Admin:
    return admin.scoped(Scope.of(tenants, kw.get("queues")))


async def test_stats_and_listings_count_only_the_callers_tenant(settings: Settings, db: Db) -> None:
    mine = [add_job(db, "shared", status="dead", tenant=OWN) for _ in range(2)]
    add_job(db, "shared", tenant=OWN)
    theirs = [add_job(db, "shared", status="dead", tenant=OTHER) for _ in range(3)]
    add_job(db, "shared", status="running", tenant=OTHER)
    add_job(db, "shared", status="dead")  # no tenant: only unscoped callers see it
    add_job(db, "elsewhere", tenant=OTHER)
    add_log(db, theirs[0], queue="shared")
    add_log(db, mine[0], queue="shared")
    async with Admin(settings) as admin:
        acme = scoped_admin(admin, [OWN])
        stats = await acme.stats()
        assert [q.name for q in stats.queues] == ["shared"]
        shared = stats.queues[0]
        assert (shared.dead, shared.waiting, shared.running) == (2, 1, 0)
        assert shared.completed_last_hour == 1
        assert stats.workers.total == 0
        everyone = (await admin.stats()).queue("shared")
        assert everyone is not None and (everyone.dead, everyone.running) == (6, 1)
        listed = (await acme.list_jobs(limit=100)).items
        assert {job.tenant for job in listed} == {OWN} and len(listed) == 3
        assert len((await acme.list_jobs(queue="shared", status="dead")).items) == 2
        preview = await acme.purge_dead("cli:t", queue="shared", dry_run=True)
        assert preview.count == 2 and set(preview.sample) == set(mine)
        replay = await acme.retry_dead("cli:t")
        assert replay.count == 2
        assert db.execute(
            b"SELECT count(*) FROM jobs WHERE status = 'dead' AND tenant IS DISTINCT FROM 'acme'"
        ).fetchone() == (4,)


async def test_the_tenant_filter_never_widens_a_scope(client: httpx.AsyncClient, db: Db) -> None:
    mine = add_job(db, "shared", tenant=OWN)
    theirs = add_job(db, "shared", tenant=OTHER)
    add_job(db, "shared")

    async def listed(who: str, query: str) -> list[str]:
        headers = {"Authorization": f"Bearer {TOKENS[who]}"}
        reply = await client.get(f"/api/jobs?{query}", headers=headers)
        assert reply.status_code == 200, reply.text
        return [item["id"] for item in reply.json()["items"]]

    assert await listed("all", f"tenant={OTHER}") == [str(theirs)]
    assert len(await listed("all", "queue=shared")) == 3
    assert await listed("acme", f"tenant={OWN}") == [str(mine)]
    assert await listed("acme", f"tenant={OTHER}") == []
    bad = await client.get(
        "/api/jobs?tenant=a%20b", headers={"Authorization": f"Bearer {TOKENS['all']}"}
    )
    assert bad.status_code == 400


async def test_bulk_actions_touch_only_the_scope(settings: Settings, db: Db) -> None:
    mine = add_job(db, "shared", status="dead", tenant=OWN)
    theirs = add_job(db, "shared", status="dead", tenant=OTHER)
    async with Admin(settings) as admin:
        result = await scoped_admin(admin, [OWN]).retry_jobs([mine, theirs], "cli:t")
    assert (result.count, result.skipped) == (1, [theirs])
    rows = dict(db.execute(b"SELECT id, status FROM jobs").fetchall())
    assert rows == {mine: "queued", theirs: "dead"}


async def test_queue_scope_limits_queues_and_workers(settings: Settings, db: Db) -> None:
    add_job(db, "emails", tenant=OTHER)
    add_job(db, "reports")
    add_worker(db, "w-mail", ["emails", "reports"])
    add_worker(db, "w-reports", ["reports"])
    async with Admin(settings) as admin:
        mail = scoped_admin(admin, queues=["emails"])
        assert [q.name for q in (await mail.stats()).queues] == ["emails"]
        workers = await mail.workers()
        assert [(w.id, w.queues) for w in workers] == [("w-mail", ["emails"])]
        assert await scoped_admin(admin, [OWN]).workers() == []
        with pytest.raises(Exception, match="unknown queue"):
            await mail.peek("reports")
        assert len(await mail.peek("emails")) == 1


async def test_the_audit_log_shows_a_scoped_reader_only_its_rows(
    settings: Settings, db: Db
) -> None:
    mine, later = (add_job(db, "shared", status="dead", tenant=OWN) for _ in range(2))
    theirs = add_job(db, "shared", status="dead", tenant=OTHER)
    async with Admin(settings) as admin:
        acme = scoped_admin(admin, [OWN])
        await admin.retry(theirs, "cli:root")
        await admin.delete_jobs([mine, theirs], "cli:root")  # touches both tenants
        await admin.pause("shared", "cli:root")  # queue-wide
        await acme.retry(later, "token:acme")
        await acme.retry_dead("token:acme")  # nothing dead left: a no-op in its own scope
        assert [(e.actor, e.action) for e in await acme.audit_log()] == [
            ("token:acme", "retry_dead"),
            ("token:acme", "retry"),
        ]
        assert len(await admin.audit_log()) == 5
        mail = scoped_admin(admin, queues=["shared"])
        assert len(await mail.audit_log()) == 5
        assert await scoped_admin(admin, queues=["other"]).audit_log() == []


async def test_why_waiting_counts_only_the_callers_tenant(settings: Settings, db: Db) -> None:
    for _ in range(3):
        add_job(db, "shared", priority=1, tenant=OTHER)
    add_job(db, "shared", priority=1, tenant=OWN)
    mine = add_job(db, "shared", priority=50, tenant=OWN)
    async with Admin(settings) as admin:
        everyone = (await admin.job_detail(mine)).why_waiting
        scoped = (await scoped_admin(admin, [OWN]).job_detail(mine)).why_waiting
    assert everyone is not None and "behind 4 jobs" in everyone
    assert scoped is not None and "behind 1 job " in scoped and "only your tenants" in scoped
