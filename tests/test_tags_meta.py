"""Tags and meta: given at enqueue (checked first: a bad one writes nothing), searched
through their GIN indexes from the admin layer, the API, the CLI and the dashboard, and
always within the caller's tenants."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from conveyor.admin import Admin, AdminError
from conveyor.admin.jobs import AT_REST, IN_FLIGHT
from conveyor.app import Conveyor
from conveyor.cli.main import main
from conveyor.config import Settings
from conveyor.errors import EnqueueError
from conveyor.scope import Scope
from conveyor.store.migrate import migrate
from conveyor.store.queries import load_queries
from conveyor.vocabulary import DEAD, RUNNING
from conveyor.web.app import create_app
from tests.factories import add_job
from tests.test_cli_admin import clean_env, write_config

Db = psycopg.Connection[Any]
TOKENS = {
    "all": "tags-unscoped-viewer-token-0123",
    "acme": "tags-acme-scoped-viewer-token-01",
}
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    tokens = [
        {"name": "all-bot", "token": TOKENS["all"], "role": "viewer"},
        {"name": "acme-bot", "token": TOKENS["acme"], "role": "viewer", "tenants": ["acme"]},
    ]
    result = settings_factory(**{"web.tokens": tokens})
    migrate(result.database.url, result.database.schema_name)
    return result


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(settings) as opened:
        yield opened


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    web = create_app(settings)
    async with (
        web.router.lifespan_context(web),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://testserver"
        ) as http,
    ):
        yield http


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def job_count(db: Db) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def labelled(app: Conveyor) -> dict[str, UUID]:
    """Jobs of two tenants with and without labels, enqueued the way producers do."""

    @app.task(name="invoice", queue="billing")
    def invoice(payload: Any) -> None:
        pass

    return {
        "acme_eu": app.enqueue(
            invoice, {}, tenant="acme", tags=["invoice", "eu"], meta={"customer": "acme", "n": 7}
        ),
        "acme_us": app.enqueue(
            invoice, {}, tenant="acme", tags=["invoice", "us"], meta={"customer": "acme", "n": 8}
        ),
        "globex_eu": app.enqueue(
            invoice, {}, tenant="globex", tags=["invoice", "eu"], meta={"customer": "globex"}
        ),
        "plain": app.enqueue(invoice, {}, tenant="acme"),
    }


# -- enqueue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tags": "invoice"}, "tags must be a list of strings"),
        ({"tags": ["two words"]}, "tag 'two words' must be 1-64 letters"),
        ({"tags": ["a,b"]}, "tag 'a,b' must be"),
        ({"tags": ["x" * 65]}, "must be 1-64"),
        ({"tags": [str(n) for n in range(21)]}, "at most 20 tags"),
        ({"tags": [7]}, "tag 7 must be"),
        ({"meta": ["k", "v"]}, "meta must be an object"),
        ({"meta": {"nested": {"a": 1}}}, "meta\\['nested'\\] must be a string, an integer"),
        ({"meta": {"none": None}}, "must be a string, an integer"),
        ({"meta": {"bad key": 1}}, "key 'bad key' must be"),
        ({"meta": {"x": float("nan")}}, "must be a finite number"),
        ({"meta": {"x": 2**70}}, "must fit in 64 bits"),
        ({"meta": {"blob": "x" * 5000}}, "bytes as JSON; the limit is 4096"),
        ({"meta": {f"k{n}": n for n in range(33)}}, "at most 32 keys"),
    ],
)
def test_enqueue_refuses_bad_tags_and_meta(
    app: Conveyor, db: Db, options: dict[str, Any], message: str
) -> None:
    task = app.task(name="t", queue="q")(lambda payload: None)
    with pytest.raises(EnqueueError, match=message):
        app.enqueue(task, {}, **options)
    with pytest.raises(EnqueueError, match=message):
        app.enqueue_many(task, [{}, {}], **options)
    assert job_count(db) == 0


def test_tags_and_meta_are_stored_only_when_given(
    app: Conveyor, db: Db, labelled: dict[str, UUID]
) -> None:
    task = app.tasks["invoice"]
    empty = app.enqueue(task, {}, tags=[], meta={})
    repeated = app.enqueue(task, {}, tags=["eu", "eu", "vip"])
    rows = dict(
        (
            (job_id, (tags, meta))
            for job_id, tags, meta in db.execute(b"SELECT id, tags, meta FROM jobs")
        )
    )
    assert rows[labelled["acme_eu"]] == (["invoice", "eu"], {"customer": "acme", "n": 7})
    assert rows[labelled["plain"]] == (None, None)
    assert rows[empty] == (None, None)  # no entry in either GIN index
    assert rows[repeated] == (["eu", "vip"], None)


# -- search ----------------------------------------------------------------------------------


async def test_admin_searches_by_tag_and_meta_within_the_other_filters(
    admin: Admin, db: Db, labelled: dict[str, UUID]
) -> None:
    async def found(**filters: Any) -> set[UUID]:
        return {job.id for job in (await admin.list_jobs(**filters)).items}

    ids = labelled
    assert await found(tags=["eu"]) == {ids["acme_eu"], ids["globex_eu"]}
    assert await found(tags=["eu", "invoice"]) == {ids["acme_eu"], ids["globex_eu"]}
    assert await found(tags=["eu", "us"]) == set()
    assert await found(meta={"customer": "acme"}) == {ids["acme_eu"], ids["acme_us"]}
    assert await found(meta={"n": 7}) == {ids["acme_eu"]}
    assert await found(meta={"n": "7"}) == set()  # typed: the text "7" is not the number 7
    assert await found(tags=["eu"], meta={"customer": "acme"}) == {ids["acme_eu"]}
    assert await found(tags=["eu"], tenant="globex") == {ids["globex_eu"]}
    assert await found(tags=["eu"], status="queued", queue="billing") == {
        ids["acme_eu"],
        ids["globex_eu"],
    }
    assert await found(tags=["eu"], status="completed") == set()
    db.execute(b"UPDATE jobs SET status = %s WHERE id = %s", (DEAD, ids["acme_eu"]))
    assert await found(tags=["eu"], status="dead") == {ids["acme_eu"]}
    # Keyset pages work as in the plain listing.
    first = await admin.list_jobs(tags=["invoice"], limit=2)
    assert len(first.items) == 2 and first.next_cursor is not None
    rest = await admin.list_jobs(tags=["invoice"], limit=2, after=first.next_cursor)
    assert {job.id for job in first.items + rest.items} == {
        ids["acme_eu"],
        ids["acme_us"],
        ids["globex_eu"],
    }
    # A tenant-scoped caller never sees another tenant's job, however it searches.
    acme = admin.scoped(Scope.of(tenants=["acme"]))
    assert {job.id for job in (await acme.list_jobs(tags=["eu"])).items} == {ids["acme_eu"]}
    assert (await acme.list_jobs(meta={"customer": "globex"})).items == []
    assert (await acme.list_jobs(tags=["eu"], tenant="globex")).items == []
    detail = await admin.job_detail(ids["acme_us"])
    assert (detail.tags, detail.meta) == (["invoice", "us"], {"customer": "acme", "n": 8})
    for bad, message in (
        ({"tags": ["no spaces"]}, "tag filter: tag 'no spaces'"),
        ({"meta": {"k": [1]}}, "meta filter\\['k'\\] must be"),
        ({"tags": "eu"}, "must be a list of strings"),
    ):
        with pytest.raises(AdminError, match=message):
            await admin.list_jobs(**bad)


async def test_api_filters_jobs_by_tag_and_meta(
    client: httpx.AsyncClient, db: Db, labelled: dict[str, UUID]
) -> None:
    async def listed(who: str, **params: str) -> set[str]:
        reply = await client.get("/api/jobs", params=params, headers=bearer(who))
        assert reply.status_code == 200, reply.text
        return {item["id"] for item in reply.json()["items"]}

    ids = {name: str(job_id) for name, job_id in labelled.items()}
    assert await listed("all", tag="eu") == {ids["acme_eu"], ids["globex_eu"]}
    assert await listed("all", tag="eu,invoice", meta='{"customer": "globex"}') == {
        ids["globex_eu"]
    }
    assert await listed("all", meta='{"n": 8}', status="queued") == {ids["acme_us"]}
    assert await listed("acme", tag="eu") == {ids["acme_eu"]}
    assert await listed("acme", meta='{"customer": "globex"}') == set()
    detail = await client.get(f"/api/jobs/{ids['acme_eu']}", headers=bearer("all"))
    body = detail.json()
    assert (body["tags"], body["meta"], body["progress"]) == (
        ["invoice", "eu"],
        {"customer": "acme", "n": 7},
        None,
    )
    for params, message in (
        ({"tag": "two words"}, "query parameter 'tag'"),
        ({"tag": ","}, "query parameter 'tag'"),
        ({"meta": "customer=acme"}, "must be a JSON object"),
        ({"meta": '{"k": {"deep": 1}}'}, "meta['k'] must be a string"),
        ({"meta": "[1]"}, "valid dictionary"),
    ):
        reply = await client.get("/api/jobs", params=params, headers=bearer("all"))
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"]


def test_cli_filters_jobs_and_shows_labels(
    settings: Settings, tmp_path: Path, labelled: dict[str, UUID]
) -> None:
    config = write_config(tmp_path / "conveyor.yaml", settings)
    runner = CliRunner(env=clean_env())

    def admin_cli(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config), "admin", *args])

    result = admin_cli("jobs", "--tag", "eu", "--meta", "customer=acme", "--meta", "n:=7", "--json")
    assert result.exit_code == 0, result.output
    assert [item["id"] for item in json.loads(result.stdout)["items"]] == [str(labelled["acme_eu"])]
    result = admin_cli("jobs", "--tag", "invoice", "--tenant", "globex", "--json")
    assert [item["id"] for item in json.loads(result.stdout)["items"]] == [
        str(labelled["globex_eu"])
    ]
    shown = admin_cli("job", str(labelled["acme_eu"]))
    assert shown.exit_code == 0, shown.output
    assert "invoice, eu" in shown.stdout and '"customer":"acme"' in shown.stdout
    for args, message in (
        (("--meta", "nokey"), "must be key=value"),
        (("--meta", "n:=seven"), "give a JSON number, true or false"),
        (("--tag", "a b"), "tag 'a b' must be"),
    ):
        bad = admin_cli("jobs", *args)
        assert bad.exit_code != 0 and "Traceback" not in bad.output
        assert message in bad.stderr


async def login(client: httpx.AsyncClient, who: str) -> None:
    page = await client.get("/login")
    match = CSRF_INPUT.search(page.text)
    assert match
    reply = await client.post(
        "/login", data={"token": TOKENS[who], "csrf_token": match.group(1), "next": "/"}
    )
    assert reply.status_code == 303, reply.text


async def test_dashboard_filters_by_tag_and_meta_and_shows_them(
    client: httpx.AsyncClient, db: Db, labelled: dict[str, UUID]
) -> None:
    await login(client, "all")
    page = (await client.get("/queues/billing", params={"tag": "eu"})).text
    assert str(labelled["acme_eu"]) in page and str(labelled["globex_eu"]) in page
    assert str(labelled["acme_us"]) not in page and str(labelled["plain"]) not in page
    rows = (
        await client.get("/queues/billing/rows", params={"tag": "eu", "meta": "customer=acme"})
    ).text
    assert str(labelled["acme_eu"]) in rows and str(labelled["globex_eu"]) not in rows
    bad = await client.get("/queues/billing", params={"meta": "n:=seven"})
    assert bad.status_code == 400 and "give a JSON number" in bad.text
    db.execute(
        b"UPDATE jobs SET status = %s, started = now(), progress = 0.4,"
        b" progress_message = 'sent 400 of 1000', progress_at = now() WHERE id = %s",
        (RUNNING, labelled["acme_eu"]),
    )
    modal = (await client.get(f"/jobs/{labelled['acme_eu']}", headers={"HX-Request": "true"})).text
    assert 'value="40"' in modal and "sent 400 of 1000" in modal
    assert '?tag=eu"><code>eu</code>' in modal and 'customer: "acme"' in modal
    running = (await client.get("/queues/billing/rows", params={"status": "running"})).text
    assert "40 %" in running


async def test_dashboard_search_stays_within_the_tenant(
    client: httpx.AsyncClient, labelled: dict[str, UUID]
) -> None:
    await login(client, "acme")
    page = (await client.get("/queues/billing", params={"tag": "eu"})).text
    assert str(labelled["acme_eu"]) in page and str(labelled["globex_eu"]) not in page


# -- indexes ---------------------------------------------------------------------------------


def plan_of(db: Db, settings: Settings, **filters: Any) -> str:
    params: dict[str, Any] = {
        "tags": None,
        "meta": None,
        "queue": None,
        "statuses": [*AT_REST, *IN_FLIGHT],
        "retry": None,
        "before_created": "infinity",
        "before_id": UUID(int=0),
        "min_age": None,
        "max_age": None,
        "min_priority": -(2**31),
        "max_priority": 2**31 - 1,
        "text": None,
        "limit": 51,
        "tenants": None,
        "queues": None,
        **filters,
    }
    statement = load_queries(settings.database.schema_name)["admin_search_jobs"]
    rows = db.execute(b"EXPLAIN " + statement, params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_searches_read_the_gin_indexes_not_every_payload(settings: Settings, db: Db) -> None:
    db.execute(
        b"INSERT INTO job_queues (name) VALUES ('bulk');"
        b" INSERT INTO jobs (id, queue_name, task, payload, tags, meta)"
        b" SELECT gen_random_uuid(), 'bulk', 't', jsonb_build_object('n', n),"
        b"        CASE WHEN n % 500 = 0 THEN ARRAY['rare', 'n' || n] END,"
        b"        CASE WHEN n % 500 = 0 THEN jsonb_build_object('batch', n) END"
        b" FROM generate_series(1, 30000) AS n;"
        b" ANALYZE jobs"
    )
    by_tag = plan_of(db, settings, tags=["rare"])
    assert "jobs_tags_idx" in by_tag and "Seq Scan" not in by_tag, by_tag
    by_meta = plan_of(db, settings, meta='{"batch": 1000}')
    assert "jobs_meta_idx" in by_meta and "Seq Scan" not in by_meta, by_meta
    scoped = plan_of(db, settings, tags=["n1000"], tenants=["acme"], queue="bulk")
    assert "jobs_tags_idx" in scoped and "Seq Scan" not in scoped, scoped


def index_bytes(db: Db) -> tuple[int, int]:
    row = db.execute(
        b"SELECT pg_relation_size('jobs_tags_idx'), pg_relation_size('jobs_meta_idx')"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_jobs_without_tags_or_meta_add_nothing_to_their_indexes(app: Conveyor, db: Db) -> None:
    task = app.task(name="t", queue="q")(lambda payload: None)
    before = index_bytes(db)
    app.enqueue_many(task, [{"n": n} for n in range(3000)])
    add_job(db, "q", status="completed")
    assert index_bytes(db) == before
