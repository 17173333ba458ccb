"""A workflow where operators look at it: `Admin.job_detail` (parents and children with
their states, why a child waits), the listing of waiting jobs, `GET /api/jobs/<id>`, the
job modal of the dashboard and `conveyor admin job <id>`; a waiting job can be cancelled
there, and its children follow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.cli.main import main
from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.vocabulary import CANCELLED, COMPLETED, QUEUED, WAITING
from conveyor.web.app import create_app
from tests.factories import add_job
from tests.test_cli_admin import clean_env, write_config
from tests.test_dashboard import TOKENS, login


@pytest.fixture
def web_settings(settings_factory: Callable[..., Settings]) -> Settings:
    tokens = [
        {"name": "viewer-bot", "role": "viewer", "token": TOKENS["viewer"]},
        {"name": "ops-bot", "role": "operator", "token": TOKENS["operator"]},
    ]
    settings = settings_factory(**{"web.tokens": tokens})
    migrate(settings.database.url, settings.database.schema_name)
    return settings


@pytest.fixture
def flow(web_settings: Settings) -> Iterator[dict[str, UUID]]:
    """A completed parent and a queued one; a child waiting on both, a grandchild on it."""
    app = Conveyor(web_settings)

    @app.task(queue="q")
    def step(_: Any) -> None:
        return None

    with psycopg.connect(web_settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{web_settings.database.schema_name}"'.encode())
        done = add_job(db, "q", task=step.name, status=COMPLETED)
        open_ = app.enqueue(step, None)
        child = app.enqueue(step, None, depends_on=[done, open_])
        grandchild = app.enqueue(step, None, depends_on=[child], on_parent_failure="run")
    app.close()
    yield {"done": done, "open": open_, "child": child, "grandchild": grandchild}


async def test_admin_shows_parents_children_and_why_a_child_waits(
    web_settings: Settings, flow: dict[str, UUID]
) -> None:
    async with Admin(web_settings) as admin:
        child = await admin.job_detail(flow["child"])
        parent = await admin.job_detail(flow["open"])
        waiting = await admin.list_jobs(queue="q", status=WAITING)
        stats = await admin.stats()
        everything = await admin.list_jobs(queue="q")
    assert child.status == WAITING and child.pending_parents == 1
    assert [(link.id, link.status) for link in child.parents] == [
        (flow["done"], COMPLETED),
        (flow["open"], QUEUED),
    ]
    assert [link.id for link in child.children] == [flow["grandchild"]]
    assert child.why_waiting is not None and "Waiting for 1 parent" in child.why_waiting
    assert "cancelled" in child.why_waiting
    assert [(link.id, link.status) for link in parent.children] == [(flow["child"], WAITING)]
    assert parent.parents == [] and parent.pending_parents is None
    assert {job.id for job in waiting.items} == {flow["child"], flow["grandchild"]}
    queue = stats.queue("q")
    assert queue is not None and queue.awaiting_parents == 2
    assert {flow["child"], flow["grandchild"], flow["open"]} <= {j.id for j in everything.items}


async def test_api_and_dashboard_show_the_graph_and_cancel_a_waiting_job(
    web_settings: Settings, flow: dict[str, UUID]
) -> None:
    app = create_app(web_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        viewer = {"Authorization": f"Bearer {TOKENS['viewer']}"}
        body = (await client.get(f"/api/jobs/{flow['child']}", headers=viewer)).json()
        assert [link["id"] for link in body["parents"]] == [str(flow["done"]), str(flow["open"])]
        assert body["children"][0]["status"] == WAITING
        assert (body["pending_parents"], body["on_parent_failure"]) == (1, "cancel")
        listed = (await client.get("/api/jobs?status=waiting", headers=viewer)).json()
        assert {job["id"] for job in listed["items"]} == {
            str(flow["child"]),
            str(flow["grandchild"]),
        }

        await login(client, "operator")
        page = (await client.get(f"/jobs/{flow['child']}")).text
        assert "<h3>Workflow</h3>" in page
        assert str(flow["open"]) in page and str(flow["grandchild"]) in page
        assert 'action="/jobs/' + str(flow["child"]) + '/cancel"' in page
    async with Admin(web_settings) as admin:
        cancelled = await admin.cancel(flow["child"], "ops")
        grandchild = await admin.job_detail(flow["grandchild"])
    assert cancelled.status == CANCELLED
    # Its rule is "run": a cancelled parent counts as ended, and it was the only one.
    assert grandchild.status == QUEUED and grandchild.pending_parents == 0


def test_the_cli_prints_the_workflow(
    web_settings: Settings, flow: dict[str, UUID], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "conveyor.yaml", web_settings)
    runner = CliRunner(env=clean_env())
    result = runner.invoke(main, ["--config", str(config), "admin", "job", str(flow["child"])])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "workflow" in result.stdout and str(flow["open"]) in result.stdout
    assert "Waiting for 1 parent" in result.stdout
    stats = runner.invoke(main, ["--config", str(config), "admin", "stats"])
    assert "waiting on parents (depends_on): q 2" in stats.stdout
