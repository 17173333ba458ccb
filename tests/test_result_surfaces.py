"""A job's result where operators read it: `Admin.job_detail`, `GET /api/jobs/<id>`, the
job modal of the dashboard and `conveyor admin job <id>`: sealed fields stay sealed, a
large result is cut, a result that was not kept says why. Rows fabricated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from conveyor.admin import Admin
from conveyor.admin.jobs import RESULT_CAP
from conveyor.cli.main import main
from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.vocabulary import COMPLETED
from conveyor.web.app import create_app
from tests.factories import add_job
from tests.test_cli_admin import clean_env, write_config
from tests.test_dashboard import TOKENS, login

SEALED = {"ssn": {"$encrypted": "v2:c2VhbGVk"}, "total": 42}
DROPPED = "result not stored: the return value of task t is not JSON-serialisable: Type is not"


@pytest.fixture
def web_settings(settings_factory: Callable[..., Settings]) -> Settings:
    tokens = [{"name": "viewer-bot", "role": "viewer", "token": TOKENS["viewer"]}]
    settings = settings_factory(**{"web.tokens": tokens})
    migrate(settings.database.url, settings.database.schema_name)
    return settings


@pytest.fixture
def jobs(web_settings: Settings) -> Iterator[dict[str, UUID]]:
    with psycopg.connect(web_settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{web_settings.database.schema_name}"'.encode())
        yield {
            "sealed": add_job(db, "q", status=COMPLETED, result=Jsonb(SEALED)),
            "huge": add_job(db, "q", status=COMPLETED, result=Jsonb({"text": "y" * 70_000})),
            "dropped": add_job(db, "q", status=COMPLETED, result_error=DROPPED),
            "none": add_job(db, "q", status=COMPLETED),
        }


async def test_admin_and_api_show_the_result_sealed_and_cut(
    web_settings: Settings, jobs: dict[str, UUID]
) -> None:
    async with Admin(web_settings) as admin:
        sealed = await admin.job_detail(jobs["sealed"])
        huge = await admin.job_detail(jobs["huge"])
        dropped = await admin.job_detail(jobs["dropped"])
        plain = await admin.job_detail(jobs["none"])
    assert (sealed.result, sealed.result_truncated, sealed.result_error) == (SEALED, False, None)
    assert huge.result_truncated and isinstance(huge.result, str)
    assert len(huge.result) == RESULT_CAP and huge.result.startswith('{"text": "yyy')
    assert (dropped.result, dropped.result_error) == (None, DROPPED)
    assert (plain.result, plain.result_truncated, plain.result_error) == (None, False, None)

    app = create_app(web_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        viewer = {"Authorization": f"Bearer {TOKENS['viewer']}"}
        body = (await client.get(f"/api/jobs/{jobs['sealed']}", headers=viewer)).json()
        assert (body["result"], body["result_truncated"]) == (SEALED, False)
        body = (await client.get(f"/api/jobs/{jobs['huge']}", headers=viewer)).json()
        assert body["result_truncated"] is True and len(body["result"]) == RESULT_CAP
        body = (await client.get(f"/api/jobs/{jobs['dropped']}", headers=viewer)).json()
        assert body["result_error"] == DROPPED

        await login(client, "viewer")
        page = (await client.get(f"/jobs/{jobs['sealed']}")).text
        assert "<summary>Result</summary>" in page and "$encrypted" in page
        assert "v2:c2VhbGVk" in page, "shown sealed, as a payload's encrypted field is"
        page = (await client.get(f"/jobs/{jobs['huge']}")).text
        assert "Result (truncated: the first 64 KiB of its JSON)" in page
        page = (await client.get(f"/jobs/{jobs['dropped']}")).text
        assert "result not stored: the return value of task t" in page
        page = (await client.get(f"/jobs/{jobs['none']}")).text
        assert "<summary>Result" not in page


def test_the_cli_prints_the_result(
    web_settings: Settings, jobs: dict[str, UUID], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "conveyor.yaml", web_settings)
    runner = CliRunner(env=clean_env())

    def job(*args: str) -> Any:
        result = runner.invoke(main, ["--config", str(config), "admin", "job", *args])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result.stdout

    shown = job(str(jobs["sealed"]))
    assert "result:" in shown and '"$encrypted": "v2:c2VhbGVk"' in shown
    assert "truncated" in job(str(jobs["huge"]))
    assert "none kept: result not stored" in job(str(jobs["dropped"]))
    assert "result:" not in job(str(jobs["none"]))
    assert '"result_error": null' in job(str(jobs["sealed"]), "--json")
