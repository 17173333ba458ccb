"""Edit and replay through the JSON API and `conveyor admin replay`: the same admin call,
the same checks, and a refusal changes nothing."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pydantic
import pytest
import yaml
from click.testing import CliRunner, Result

from conveyor.cli.main import main
from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from tests.factories import add_job
from tests.test_cli_admin import clean_env, write_config

Db = psycopg.Connection[Any]


class Invoice(pydantic.BaseModel):
    invoice_id: int


OPERATOR = "operator-secret-token-0123456789"
VIEWER = "viewer-secret-token-0123456789"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    tokens = [
        {"name": "ops-bot", "token": OPERATOR, "role": "operator"},
        {"name": "look-bot", "token": VIEWER, "role": "viewer"},
    ]
    result = settings_factory(**{"web.tokens": tokens, "jobs.max_payload_bytes": 300})
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


def state(db: Db, job_id: UUID) -> tuple[Any, ...] | None:
    return db.execute(
        b"SELECT status, attempt, payload FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()


def audits(db: Db) -> list[tuple[Any, ...]]:
    return db.execute(b"SELECT actor, action, target, detail FROM audit_log").fetchall()


async def replay(client: httpx.AsyncClient, job_id: UUID, body: Any, token: str = OPERATOR) -> Any:
    return await client.post(
        f"/api/jobs/{job_id}/replay", json=body, headers={"Authorization": f"Bearer {token}"}
    )


# -- API -------------------------------------------------------------------------------------


async def test_api_replays_with_the_new_payload(client: httpx.AsyncClient, db: Db) -> None:
    job_id = add_job(db, status="dead", attempt=3, payload={"to": "old"})
    response = await replay(client, job_id, {"payload": {"to": "new"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["action"], body["previous_status"], body["status"]) == (
        "replay_edited",
        "dead",
        "queued",
    )
    assert state(db, job_id) == ("queued", 0, {"to": "new"})
    [(actor, action, target, detail)] = audits(db)
    assert (actor, action, target) == ("token:ops-bot", "replay_edited", f"job:{job_id}")
    assert (detail["payload_before"], detail["payload_after"]) == ({"to": "old"}, {"to": "new"})
    # A null payload is a payload too.
    other = add_job(db, status="dead", attempt=3, payload={"n": 1})
    assert (await replay(client, other, {"payload": None})).status_code == 200
    assert state(db, other) == ("queued", 0, None)


async def test_api_refusals_change_nothing(client: httpx.AsyncClient, db: Db) -> None:
    dead = add_job(db, status="dead", attempt=3, payload={"n": 1})
    queued = add_job(db, payload={"n": 1})
    cases = [
        (dead, {"payload": {"text": "x" * 400}}, 400, "over the 300-byte limit"),
        (dead, {"payload": {"n": 2}, "extra": 1}, 400, "unknown body field"),
        (dead, {}, 400, "'payload'"),
        (queued, {"payload": {"n": 2}}, 409, "not dead"),
        (UUID(int=5), {"payload": {"n": 2}}, 404, "no job"),
    ]
    for job_id, body, status, fragment in cases:
        response = await replay(client, job_id, body)
        assert response.status_code == status, response.text
        assert fragment in response.json()["error"]
    viewer = await replay(client, dead, {"payload": {"n": 2}}, token=VIEWER)
    assert viewer.status_code == 403
    assert state(db, dead) == ("dead", 3, {"n": 1})
    assert state(db, queued) == ("queued", 0, {"n": 1})
    assert audits(db) == []


# -- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Callable[..., Result]:
    config = write_config(tmp_path / "conveyor.yaml", settings)
    limits = {"jobs": {"max_payload_bytes": settings.jobs.max_payload_bytes}}
    config.write_text(config.read_text() + yaml.safe_dump(limits))
    runner = CliRunner(env=clean_env())

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(main, ["--config", str(config), "admin", "replay", *args], input=stdin)

    return invoke


def test_cli_replays_from_an_argument_a_file_or_stdin(
    cli: Callable[..., Result], db: Db, tmp_path: Path
) -> None:
    first = add_job(db, status="dead", attempt=3, payload={"n": 1})
    done = cli(str(first), "--payload", '{"n": 2}', "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["status"] == "queued"
    assert state(db, first) == ("queued", 0, {"n": 2})

    second = add_job(db, status="dead", attempt=3, payload={"n": 1})
    edited = tmp_path / "payload.json"
    edited.write_text('{"n": 3, "note": "fixed by hand"}')
    done = cli(str(second), "--payload-file", str(edited))
    assert done.exit_code == 0, done.output
    assert "edited payload" in done.output
    assert state(db, second) == ("queued", 0, {"n": 3, "note": "fixed by hand"})

    third = add_job(db, status="dead", attempt=3, payload={"n": 1})
    done = cli(str(third), "--payload-file", "-", stdin='["from", "stdin"]')
    assert done.exit_code == 0, done.output
    assert state(db, third) == ("queued", 0, ["from", "stdin"])
    actors = {row[0] for row in audits(db)}
    assert len(actors) == 1 and actors.pop().startswith("cli:")


def test_cli_refusals_change_nothing(cli: Callable[..., Result], db: Db) -> None:
    dead = add_job(db, status="dead", attempt=3, payload={"n": 1})
    usage = [
        ((str(dead),), "--payload or --payload-file"),
        ((str(dead), "--payload", "1", "--payload-file", "-"), "--payload or --payload-file"),
        ((str(dead), "--payload", "{n: 2}"), "not valid JSON"),
        ((str(dead), "--payload", "1", "--app", "nowhere"), "--app must look like"),
        ((str(dead), "--payload", "1", "--app", "no_such_module_here:app"), "no_such_module"),
    ]
    for args, fragment in usage:
        done = cli(*args)
        assert done.exit_code == 2, done.output
        assert fragment in done.output
    refused = [
        ((str(dead), "--payload", json.dumps({"text": "x" * 400})), "over the 300-byte limit"),
        (("nope", "--payload", "1"), "job id"),
    ]
    for args, fragment in refused:
        done = cli(*args)
        assert done.exit_code == 1, done.output
        assert fragment in done.output and "Traceback" not in done.output
    assert state(db, dead) == ("dead", 3, {"n": 1})
    assert audits(db) == []


APP_MODULE = """
import pydantic
from conveyor import Conveyor

app = Conveyor(database_url="postgresql://nobody@127.0.0.1:1/none")


class Invoice(pydantic.BaseModel):
    invoice_id: int


@app.task(name="billing.invoice")
def invoice(payload: Invoice) -> None:
    return None
"""


def test_cli_checks_the_task_model_with_app(
    cli: Callable[..., Result], db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "replay_edit_app"
    package.mkdir()
    (package / "__init__.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "replay_edit_app", raising=False)
    job_id = add_job(db, task="billing.invoice", status="dead", payload={"invoice_id": 1})
    app = "replay_edit_app:app"
    done = cli(str(job_id), "--payload", '{"invoice_id": "one"}', "--app", app)
    assert done.exit_code == 1, done.output
    assert "invoice_id" in done.output
    assert state(db, job_id) == ("dead", 0, {"invoice_id": 1})
    done = cli(str(job_id), "--payload", '{"invoice_id": "2"}', "--app", app)
    assert done.exit_code == 0, done.output
    assert state(db, job_id) == ("queued", 0, {"invoice_id": 2})


# -- dashboard -------------------------------------------------------------------------------


async def test_dashboard_edit_box_and_replay(settings: Settings, db: Db) -> None:
    from conveyor.app import Conveyor
    from tests.test_dashboard import csrf_of
    from tests.test_web_security import log_in, serving

    app = Conveyor(settings)

    @app.task(name="billing.invoice")
    def invoice(payload: Invoice) -> None:
        return None

    dead = add_job(db, task="billing.invoice", status="dead", attempt=3, payload={"invoice_id": 1})
    running = add_job(db, status="running", attempt=1, worker="w-1")
    htmx = {"HX-Request": "true"}
    async with serving(settings, tasks=app.tasks) as http:
        assert (await log_in(http, token=VIEWER)).status_code == 303
        modal = await http.get(f"/jobs/{dead}", headers=htmx)
        assert modal.status_code == 200 and 'name="payload"' not in modal.text
    async with serving(settings, tasks=app.tasks) as http:
        assert (await log_in(http, token=OPERATOR)).status_code == 303
        modal = await http.get(f"/jobs/{dead}", headers=htmx)
        assert f'hx-post="/jobs/{dead}/replay"' in modal.text
        assert "&#34;invoice_id&#34;: 1" in modal.text  # prefilled, escaped
        assert "<script" not in modal.text
        other = await http.get(f"/jobs/{running}", headers=htmx)
        assert 'name="payload"' not in other.text
        csrf = csrf_of(modal.text)

        async def post(payload: str) -> httpx.Response:
            return await http.post(
                f"/jobs/{dead}/replay",
                data={"payload": payload, "csrf_token": csrf},
                headers=htmx,
            )

        for text, fragment in [
            ("{invoice_id: 2}", "not valid JSON"),
            ("  ", "edit box"),
            ('{"invoice_id": "two"}', "invoice_id"),
        ]:
            refused = await post(text)
            assert refused.status_code == 400, refused.text
            assert fragment in refused.text
        assert state(db, dead) == ("dead", 3, {"invoice_id": 1})
        forged = await http.post(f"/jobs/{dead}/replay", data={"payload": "{}"}, headers=htmx)
        assert forged.status_code == 403  # no CSRF token
        done = await post('{"invoice_id": 2}')
        assert done.status_code == 200, done.text
        assert "edited payload" in done.text
    assert state(db, dead) == ("queued", 0, {"invoice_id": 2})
    assert [row[1] for row in audits(db)] == ["replay_edited"]
    app.close()


def test_web_refuses_an_app_it_cannot_load(settings: Settings, tmp_path: Path) -> None:
    config = write_config(tmp_path / "conveyor.yaml", settings)
    runner = CliRunner(env=clean_env())
    for app, fragment in [("nowhere", "--app must look like"), ("no_such_mod:app", "no_such")]:
        done = runner.invoke(main, ["--config", str(config), "web", "--app", app])
        assert done.exit_code == 2, done.output
        assert fragment in done.output
