"""Batches through the CLI, the JSON API and the dashboard (the API's auth and tenant
matrices are in test_api.py and test_tenants.py, the dashboard's tenant check in
test_tenants_dashboard.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.vocabulary import COMPLETED, DEAD
from tests.test_cli_admin import Invoke, cli, one_line_error, parsed
from tests.test_web_security import PASSWORD, TOKEN, log_in, serving, web_settings

__all__ = ["cli"]  # the fixture, shared

Db = psycopg.Connection[Any]


def fill(app: Conveyor, db: Db) -> tuple[UUID, list[UUID]]:
    """A finished batch of three jobs (two completed, one dead) and an unfinished one."""

    @app.task(name="part", queue="work")
    def part(payload: Any) -> None: ...

    @app.task(name="report", queue="callbacks")
    def report(payload: Any) -> None: ...

    with app.batch(description="import <b>", on_complete=("report", None)) as batch:
        ids = batch.enqueue_many("part", [{"n": n} for n in range(3)])
    db.execute(b"UPDATE jobs SET status = %s WHERE id = ANY(%s)", (COMPLETED, ids[:2]))
    db.execute(b"UPDATE jobs SET status = %s, last_error = 'boom' WHERE id = %s", (DEAD, ids[2]))
    with app.batch(description="still going") as other:
        other.enqueue("part", {})
    return batch.id, ids


def test_cli_lists_and_shows_batches(cli: Invoke, app: Conveyor, db: Db) -> None:
    assert "no batches" in cli("batches").stdout
    batch_id, ids = fill(app, db)
    listed = parsed(cli("batches", "--json"))
    assert [item["description"] for item in listed] == ["still going", "import <b>"]
    finished = listed[1]
    assert (finished["state"], finished["total"], finished["succeeded"], finished["failed"]) == (
        "failed",
        3,
        2,
        1,
    )
    assert [item["description"] for item in parsed(cli("batches", "--unfinished", "--json"))] == [
        "still going"
    ]
    table = cli("batches")
    assert table.exit_code == 0 and "import <b>" in table.stdout and "3/3" in table.stdout
    detail = parsed(cli("batch", str(batch_id), "--json"))
    assert sorted(job["id"] for job in detail["jobs"]) == sorted(str(job_id) for job_id in ids)
    assert detail["batch"]["complete_job_id"] is not None and not detail["jobs_truncated"]
    assert parsed(cli("batch", str(batch_id), "--jobs", "1", "--json"))["jobs_truncated"]
    shown = cli("batch", str(batch_id))
    assert shown.exit_code == 0 and "boom" in shown.stdout and "on_complete: report" in shown.stdout
    assert "not a batch id" in one_line_error(cli("batch", "nope"))
    assert "no batch with id" in one_line_error(cli("batch", str(uuid4())))


@pytest.fixture
def served(settings_factory: Callable[..., Settings]) -> Settings:
    return web_settings(settings_factory)


async def test_api_reads_batches_and_refuses_bad_input(served: Settings) -> None:
    app = Conveyor(served)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with psycopg.connect(served.database.url, autocommit=True) as db:
            db.execute(f'SET search_path TO "{served.database.schema_name}"'.encode())
            batch_id, _ = fill(app, db)
            async with serving(served) as http:
                listed = (await http.get("/api/batches", headers=headers)).json()
                assert [item["state"] for item in listed] == ["running", "failed"]
                one = await http.get("/api/batches?limit=1&unfinished=true", headers=headers)
                assert [item["description"] for item in one.json()] == ["still going"]
                detail = (await http.get(f"/api/batches/{batch_id}", headers=headers)).json()
                assert detail["batch"]["id"] == str(batch_id)
                statuses = sorted(job["status"] for job in detail["jobs"])
                assert statuses == [COMPLETED, COMPLETED, DEAD]
                short = await http.get(f"/api/batches/{batch_id}?jobs=2", headers=headers)
                assert short.json()["jobs_truncated"] is True
                for url, status in (
                    ("/api/batches/not-a-uuid", 400),
                    (f"/api/batches/{uuid4()}", 404),
                    ("/api/batches?limit=0", 400),
                    ("/api/batches?limt=5", 400),
                    (f"/api/batches/{batch_id}?jobs=5000", 400),
                ):
                    reply = await http.get(url, headers=headers)
                    assert reply.status_code == status, (url, reply.text)
                    assert set(reply.json()) == {"error"}
    finally:
        app.close()


async def test_dashboard_lists_a_batch_with_progress_and_its_jobs(served: Settings) -> None:
    app = Conveyor(served)
    try:
        with psycopg.connect(served.database.url, autocommit=True) as db:
            db.execute(f'SET search_path TO "{served.database.schema_name}"'.encode())
            batch_id, ids = fill(app, db)
        async with serving(served) as http:
            assert (await log_in(http, username="alice", password=PASSWORD)).status_code == 303
            home = await http.get("/")
            assert 'href="/batches"' in home.text
            page = await http.get("/batches")
            assert page.status_code == 200
            for text in ("import &lt;b&gt;", "still going", f"/batches/{batch_id}",
                         'class="batch-progress"', 'class="succeeded"', "3 / 3"):  # fmt: skip
                assert text in page.text, text
            assert "<b>" not in page.text
            unfinished = await http.get("/fragments/batches?unfinished=1")
            assert "still going" in unfinished.text and "import" not in unfinished.text
            detail = await http.get(f"/batches/{batch_id}")
            assert detail.status_code == 200
            for job_id in ids:  # each opens the job modal
                assert f'hx-get="/jobs/{job_id}" hx-target="#modal-body"' in detail.text
            assert "boom" in detail.text and "2 succeeded, 1 failed" in detail.text
            assert (await http.get(f"/batches/{uuid4()}")).status_code == 404
            assert (await http.get("/batches/nope")).status_code == 400
    finally:
        app.close()
