"""Progress a handler reports with ctx.set_progress: kept in memory, written by the
worker's heartbeat (no statement per call) or by the attempt's outcome, and visible
through the admin layer while the job runs and after it ends."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.store import Store
from conveyor.store.work import WorkerVitals
from conveyor.tasks import JobContext
from conveyor.vocabulary import DEAD, RUNNING
from conveyor.worker.outcome import COMPLETED, Outcome
from conveyor.worker.progress import with_last_progress
from tests.conftest import Running, wait_until
from tests.factories import add_job, add_worker


class CountingStore(Store):
    """A real store that counts the statements it runs, by name."""

    statements: Counter[str]

    async def _rows(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.statements[name] += 1
        return await super()._rows(name, *args, **kwargs)

    async def _dicts(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.statements[name] += 1
        return await super()._dicts(name, *args, **kwargs)

    async def _execute(self, name: str, *args: Any, **kwargs: Any) -> int:
        self.statements[name] += 1
        return await super()._execute(name, *args, **kwargs)


@pytest.fixture
async def counting_store(settings: Settings) -> AsyncIterator[CountingStore]:
    store = await CountingStore.open(settings, "worker", 4)
    store.statements = Counter()
    yield store
    await store.close()


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(settings) as opened:
        yield opened


def test_set_progress_refuses_bad_values() -> None:
    ctx = JobContext(UUID(int=1), "t", "q", 1, 3)
    for fraction in (-0.1, 1.5, math.nan, True, "0.5", None):
        with pytest.raises(ValueError, match=r"progress must be a number from 0\.0 to 1\.0"):
            ctx.set_progress(fraction)  # type: ignore[arg-type]
    for message in ("x" * 501, "nul\x00", 3):
        with pytest.raises(ValueError, match="progress message"):
            ctx.set_progress(0.5, message)  # type: ignore[arg-type]
    assert ctx.progress is None  # a refused report changes nothing
    ctx.set_progress(1, "done")
    assert ctx.progress is not None and (ctx.progress.fraction, ctx.progress.message) == (
        1.0,
        "done",
    )


def test_an_outcome_carries_only_progress_no_heartbeat_wrote() -> None:
    ctx = JobContext(UUID(int=1), "t", "q", 1, 3)
    outcome = Outcome(UUID(int=1), 1, COMPLETED, 0.1)
    assert with_last_progress(outcome, ctx).progress is None
    ctx.set_progress(0.25, "a quarter")
    carried = with_last_progress(outcome, ctx)
    assert (carried.progress, carried.progress_message) == (0.25, "a quarter")
    report = ctx.unwritten_progress()
    assert report is not None
    ctx.progress_written(report)
    assert with_last_progress(outcome, ctx).progress is None


async def test_progress_is_visible_while_running_and_stays_after(
    app: Conveyor, running: Running, admin: Admin, counting_store: CountingStore
) -> None:
    release = threading.Event()
    calls = 10_000

    @app.task(name="export", queue="progress")
    def export(payload: Any, ctx: JobContext) -> None:
        for sent in range(1, calls + 1):
            ctx.set_progress(0.4 * sent / calls, f"sent {sent * 400 // calls} of 1000")
        release.wait(30)

    job_id = app.enqueue(export, {})
    running.queuer()
    running.worker(["progress"], store=counting_store)

    async def reported() -> bool:
        detail = await admin.job_detail(job_id)
        # The first beat may land mid-loop; the report that stays is the last one.
        return detail.status == "running" and detail.progress == pytest.approx(0.4)

    await wait_until(reported, message="progress while running")
    detail = await admin.job_detail(job_id)
    assert detail.progress == pytest.approx(0.4)
    assert detail.progress_message == "sent 400 of 1000"
    assert detail.progress_at is not None
    listed = (await admin.list_jobs(queue="progress", status="running")).items
    assert [job.progress for job in listed] == [pytest.approx(0.4)]
    beats = counting_store.statements["heartbeat"]
    await wait_until(
        lambda: counting_store.statements["heartbeat"] >= beats + 3, message="more heartbeats"
    )
    # Ten thousand reports, and the worker ran only its usual statements: the reports
    # rode on heartbeats, none cost a round trip of its own.
    assert set(counting_store.statements) <= {
        "register_worker",
        "claim_jobs",
        "claim_ready_direct",
        "heartbeat",
        "record_outcomes",
        "deregister_worker",
    }
    assert sum(counting_store.statements.values()) < 100
    release.set()

    async def completed() -> bool:
        return (await admin.job_detail(job_id)).status == "completed"

    await wait_until(completed, message="the job to complete")
    detail = await admin.job_detail(job_id)
    assert (detail.progress, detail.progress_message) == (pytest.approx(0.4), "sent 400 of 1000")


async def test_progress_reported_just_before_returning_lands_with_the_outcome(
    settings_factory: Any, settings: Settings
) -> None:
    # A heartbeat far away: only the outcome can carry the report.
    slow_beats = settings_factory(**{"worker.heartbeat_interval": 60.0, "worker.dead_after": 120.0})
    app = Conveyor(slow_beats)
    system = Running(app)
    admin = Admin(slow_beats)
    await admin.open()
    try:

        @app.task(name="quick", queue="quick")
        async def quick(payload: Any, ctx: JobContext) -> None:
            ctx.set_progress(0.5)
            ctx.set_progress(1.0, "all 3 files")

        job_id = app.enqueue(quick, {})
        system.queuer()
        system.worker(["quick"])

        async def completed() -> bool:
            return (await admin.job_detail(job_id)).status == "completed"

        await wait_until(completed, message="the job to complete")
        detail = await admin.job_detail(job_id)
        assert (detail.progress, detail.progress_message) == (1.0, "all 3 files")
        assert detail.progress_at is not None
    finally:
        await system.stop()
        await admin.close()
        await app.aclose()
        app.close()


async def test_the_heartbeat_writes_progress_only_for_the_attempt_that_owns_the_job(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    store = await Store.open(settings, "test", 2)
    try:
        owned = add_job(db, "q", status=RUNNING, lease_token=3, worker="w1")
        taken = add_job(db, "q", status=RUNNING, lease_token=5, worker="w1")
        untouched = add_job(db, "q", status=RUNNING, lease_token=1, worker="w1")
        add_worker(db, "w1", ["q"])
        lease_before = lease_of(db, untouched)
        beat = await store.heartbeat(
            "w1",
            30,
            [owned, taken, untouched],
            [3, 4, 1],  # `taken` was claimed again since: token 5
            WorkerVitals(),
            [(0.5, "half"), (0.9, None), None],
        )
        assert set(beat.owned) == {owned, untouched}
        rows = dict(
            (row[0], row[1:])
            for row in db.execute(
                b"SELECT id, progress, progress_message, progress_at IS NOT NULL FROM jobs"
            ).fetchall()
        )
        assert rows[owned] == (0.5, "half", True)
        assert rows[taken] == (None, None, False)
        assert rows[untouched] == (None, None, False)
        # Nothing to renew and nothing reported: the row is not written at all.
        assert lease_of(db, untouched) == lease_before
        # A report without a message clears the previous message.
        await store.heartbeat("w1", 30, [owned], [3], WorkerVitals(), [(0.75, None)])
        row = db.execute(
            b"SELECT progress, progress_message FROM jobs WHERE id = %s", (owned,)
        ).fetchone()
        assert row == (0.75, None)
    finally:
        await store.close()


def lease_of(db: psycopg.Connection[Any], job_id: UUID) -> Any:
    row = db.execute(b"SELECT lease_expires_at, xmin::text FROM jobs WHERE id = %s", (job_id,))
    return row.fetchone()


async def test_an_operators_retry_clears_progress_and_get_job_shows_it(
    app: Conveyor, admin: Admin, db: psycopg.Connection[Any]
) -> None:
    job_id = add_job(
        db,
        "q",
        status=DEAD,
        attempt=3,
        progress=0.62,
        progress_message="sent 620 of 1000",
        progress_at="2026-01-01T00:00:00Z",
        tags=["export"],
        meta=Jsonb({"customer": "acme"}),
    )
    job = app.get_job(job_id)
    assert (job.progress, job.progress_message) == (pytest.approx(0.62), "sent 620 of 1000")
    assert job.progress_at is not None
    assert (job.tags, job.meta) == (["export"], {"customer": "acme"})
    await admin.retry(job_id, actor="test")
    job = app.get_job(job_id)
    assert (job.progress, job.progress_message, job.progress_at) == (None, None, None)
    assert job.tags == ["export"]  # labels belong to the job, not to a run
