"""Fairness between tenants: dispatch_fair on fabricated rows, and a real queuer and worker
process keeping one tenant's campaign from delaying another tenant's jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import ConfigError, Settings, load_settings
from conveyor.lanes import Lanes
from conveyor.queuer import Queuer
from conveyor.store import Store
from conveyor.store.migrate import migrate
from tests.apps import recording
from tests.conftest import wait_until
from tests.factories import add_job
from tests.processes import Processes


@pytest.fixture
def fair_settings(settings_factory: Any) -> Settings:
    result: Settings = settings_factory(
        **{"queuer.fair_buffer_per_queue": 6, "queues": {"mail": {"fairness": "tenant"}}}
    )
    migrate(result.database.url, result.database.schema_name)
    return result


@pytest.fixture
def fdb(fair_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(fair_settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{fair_settings.database.schema_name}"'.encode())
        yield conn


@pytest.fixture
async def queuer(fair_settings: Settings) -> AsyncIterator[Queuer]:
    store = await Store.open(fair_settings, "test", 2)
    lanes = Lanes.open(fair_settings)
    made = Queuer(fair_settings, store, lanes, maintenance=False)
    await made.sync_epoch()
    yield made
    await store.close()
    await lanes.close()


def test_fairness_is_read_per_queue_and_checked() -> None:
    loaded = load_settings(None, env={}, overrides={"queues": {"mail": {"fairness": "Tenant"}}})
    assert loaded.fair_queues() == ["mail"]
    with pytest.raises(ConfigError, match="fairness"):
        load_settings(None, env={}, overrides={"queues": {"mail": {"fairness": "customer"}}})


async def test_dispatch_takes_turns_across_tenants_and_priority_keeps_its_lane(
    queuer: Queuer, fdb: psycopg.Connection[Any]
) -> None:
    campaign = [add_job(fdb, "mail", tenant="a", age=500 - n) for n in range(50)]
    urgent = add_job(fdb, "mail", tenant="a", priority=10, age=1)
    b = [add_job(fdb, "mail", tenant="b", age=100 - n) for n in range(2)]
    untenanted = add_job(fdb, "mail", age=50)
    later = add_job(fdb, "mail", tenant="c", run_in=3600)  # not due: takes no turn
    plain = [add_job(fdb, "other", tenant="a", age=10 - n) for n in range(3)]
    assert await queuer.dispatch_once() == 5 + 3
    lanes = queuer.lanes
    # Room 6 for three groups with due jobs (a, b, no tenant) and c (none due): a share
    # of 2 each; c's share is left for the next pass.
    assert await lanes.peek("mail", ["high"], 10) == [str(urgent)]
    # Round 1: a's urgent job (high lane), b, the untenanted one; round 2: a, b.
    assert await lanes.peek("mail", ["normal"], 10) == [
        str(b[0]),
        str(untenanted),
        str(campaign[0]),
        str(b[1]),
    ]
    # A queue without fairness is dispatched as always, by dispatch_ready.
    assert await lanes.peek("other", ["normal"], 10) == [str(job) for job in plain]
    # The next pass fills the last free slot, with a's next job.
    assert await queuer.dispatch_once() == 1
    statuses = dict(fdb.execute(b"SELECT id, status FROM jobs").fetchall())
    assert statuses[campaign[1]] == "dispatched"
    assert statuses[later] == "queued"
    assert sum(status == "dispatched" for status in statuses.values()) == 6 + 3


@pytest.mark.fault
async def test_a_tenants_campaign_does_not_hold_back_another_tenants_jobs(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    app.tasks.update(recording.app.tasks)
    config = tmp_path / "fair.yaml"
    config.write_text("queues:\n  mail: {fairness: tenant}\n", encoding="utf-8")
    procs.queuer(CONVEYOR_CONFIG=str(config))
    procs.worker(queues="mail", concurrency=1)
    app.enqueue_many("job", [{}] * 2000, queue="mail", tenant="campaign")

    def ran(tenant: str) -> int:
        row = db.execute(
            b"SELECT count(*) FROM executions e JOIN jobs j ON j.id = e.job_id WHERE j.tenant = %s",
            (tenant,),
        ).fetchone()
        return row[0] if row else 0

    await wait_until(lambda: ran("campaign") >= 20, timeout=60, message="the campaign to run")
    before = ran("campaign")
    app.enqueue_many("job", [{}] * 5, queue="mail", tenant="transactional")
    await wait_until(
        lambda: ran("transactional") == 5, timeout=60, interval=0.05, message="tenant b's jobs"
    )
    # Behind at most the fair buffer (100 ids) already in Redis, then one in two turns.
    assert ran("campaign") - before < 200
    assert ran("campaign") < 2000, "the campaign was still running"
