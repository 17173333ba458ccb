"""The worker's store methods on real rows: typed results read by column name, fencing,
and Conveyor's own errors for an outage or an unmigrated schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.errors import DatabaseUnavailable, SchemaNotMigrated
from conveyor.lanes import Lanes
from conveyor.store import Store
from conveyor.store.work import ClaimedJob, Outcome, WorkerVitals
from conveyor.worker import Worker, WorkerOptions
from conveyor.worker.completer import Completer
from conveyor.worker.outcome import COMPLETED, HANDED_BACK, RETRY
from tests.conftest import Running, wait_until


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", size=2)
    yield opened
    await opened.close()


def dispatched_job(db: psycopg.Connection[Any], **columns: Any) -> uuid.UUID:
    job_id = uuid.uuid4()
    values = {
        "id": job_id,
        "queue_name": "work",
        "task": "job",
        "status": "dispatched",
        "payload": '{"n": 1}',
        "priority": 7,
        "max_attempts": 4,
        "timeout_seconds": 2.5,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join(f"%({name})s" for name in values)
    db.execute(b"INSERT INTO job_queues (name) VALUES ('work') ON CONFLICT DO NOTHING")
    db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})".encode(), values)
    return job_id


async def test_a_claim_is_typed_and_fenced_through_to_its_outcome(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    job_id = dispatched_job(db)
    await store.register_worker("w1", "host", 42, ["work"], 3)
    assert await store.claim_jobs([], "w1", 30) == []
    (job,) = await store.claim_jobs([str(job_id), str(uuid.uuid4())], "w1", 30)
    assert job == ClaimedJob(
        id=job_id,
        queue="work",
        task="job",
        priority=7,
        payload={"n": 1},
        attempt=1,
        max_attempts=4,
        token=1,
        timeout=2.5,
        waited=job.waited,
    )
    assert await store.claim_jobs([str(job_id)], "w1", 30) == [], "claimed once only"

    vitals = WorkerVitals(
        rss_bytes=123 << 20,
        jobs_processed=7,
        jobs_failed=2,
        busy_seconds=1.5,
        postgres_only=True,
        breakers_open=["mail"],
    )
    beat = await store.heartbeat("w1", 30, [job_id], [job.token], vitals)
    assert (beat.registered, beat.owned, beat.cancel_requested) == (True, [job_id], [])
    written = db.execute(
        b"SELECT rss_bytes, jobs_processed, jobs_failed, busy_seconds, postgres_only,"
        b" breakers_open FROM workers WHERE id = 'w1'"
    ).fetchone()
    assert written == (123 << 20, 7, 2, 1.5, True, ["mail"])
    db.execute(b"UPDATE jobs SET cancel_requested = true WHERE id = %s", (job_id,))
    beat = await store.heartbeat("w1", 30, [job_id], [job.token], vitals)
    assert beat.cancel_requested == [job_id]
    stale = await store.heartbeat("w1", 30, [job_id], [job.token + 1], vitals)
    assert stale.owned == []

    fenced = Outcome(job_id, job.token + 1, COMPLETED, 0.1)
    assert await store.record_outcomes([fenced]) == set()
    assert await store.record_outcomes([Outcome(job_id, job.token, COMPLETED, 0.1)]) == {job_id}
    row = db.execute(b"SELECT status, attempt FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row == ("completed", 1)

    await store.deregister_worker("w1")
    gone = db.execute(
        b"SELECT stopped IS NOT NULL, postgres_only, breakers_open, jobs_processed"
        b" FROM workers WHERE id = 'w1'"
    ).fetchone()
    assert gone == (True, False, [], 7), "no mode, no breaker, the totals kept"
    beat = await store.heartbeat("unknown", 30, [], [], WorkerVitals())
    assert not beat.registered


async def test_a_handed_back_attempt_is_not_counted(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    job_id = dispatched_job(db)
    (job,) = await store.claim_jobs([str(job_id)], "w1", 30)
    await store.record_outcomes([Outcome(job_id, job.token, HANDED_BACK, 0.1, error="bye")])
    row = db.execute(b"SELECT status, attempt FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row == ("queued", 0)


async def test_errors_are_conveyors_own(settings: Settings, settings_factory: Any) -> None:
    unmigrated = await Store.open(settings_factory(**{"database.schema": "never_here"}), "test")
    try:
        with pytest.raises(SchemaNotMigrated, match="conveyor migrate"):
            await unmigrated.claim_jobs([str(uuid.uuid4())], "w1", 30)
    finally:
        await unmigrated.close()
    nowhere = settings_factory(
        **{"database.url": "postgresql://postgres@127.0.0.1:1/x", "database.connect_timeout": 1}
    )
    closed = await Store.open(nowhere, "test")
    try:
        with pytest.raises(DatabaseUnavailable):
            await closed.record_outcomes([Outcome(uuid.uuid4(), 1, COMPLETED, 0.1)])
    finally:
        await closed.close()


async def test_a_worker_on_a_shared_store_and_lanes_leaves_them_open(
    app: Conveyor, settings: Settings, store: Store, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        return None

    job_id = app.enqueue(noop, {})
    lanes = Lanes.open(settings)
    running = Running(app)
    running.queuer()
    options = WorkerOptions(queues=["work"], worker_id="shared")
    worker = Worker(settings, app.tasks, options, store=store, lanes=lanes)
    stop = asyncio.Event()
    work = asyncio.create_task(worker.run(stop))
    try:
        await wait_until(lambda: app.get_job(job_id).status == "completed", message="the job")
    finally:
        stop.set()
        await work
        await running.stop()
    await lanes.ping()
    assert await store.claim_jobs([str(job_id)], "shared", 30) == []
    stopped = db.execute(b"SELECT stopped IS NOT NULL FROM workers WHERE id = 'shared'")
    assert stopped.fetchone() == (True,)
    await lanes.close()
    await app.aclose()


async def test_a_refused_batch_is_written_one_by_one(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    good, bad = dispatched_job(db), dispatched_job(db)
    claimed = {job.id: job.token for job in await store.claim_jobs([str(good), str(bad)], "w", 30)}
    completer = Completer(store)
    completer.start()
    # A backoff no interval can hold: PostgreSQL refuses the statement that carries it.
    completer.submit(Outcome(bad, claimed[bad], RETRY, 0.1, error="x", retry_in=1e300))
    completer.submit(Outcome(good, claimed[good], COMPLETED, 0.1))
    await completer.close()
    assert (completer.counts["refused"], completer.counts[COMPLETED]) == (1, 1)
    rows = db.execute(b"SELECT id, status FROM jobs").fetchall()
    assert dict(rows) == {good: "completed", bad: "running"}


async def test_finding_7_a_payload_the_worker_cannot_parse_fails_only_its_own_job(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="job", queue="work", max_attempts=3)
    def job(payload: Any) -> None:
        pass

    good = app.enqueue_many(job, [{"n": n} for n in range(3)])
    bad = app.enqueue(job, {"n": 0})
    # PostgreSQL stores numbers beyond a double; the worker's JSON parser refuses them.
    db.execute(b"""UPDATE jobs SET payload = '{"n": 1e400}'::jsonb WHERE id = %s""", (bad,))

    def state(job_id: uuid.UUID) -> tuple[str, int, str | None]:
        row = db.execute(
            b"SELECT status, attempt, last_error FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()
        assert row is not None
        return row[0], row[1], row[2]

    running.queuer()
    running.worker(["work"])
    await wait_until(lambda: state(bad)[0] == "dead", message="the bad job dead")
    for job_id in good:
        await wait_until(lambda j=job_id: state(j)[0] == "completed", message="good job")
    _, attempt, error = state(bad)
    assert attempt == 1, "retrying cannot help a payload that never parses"
    assert "cannot parse the stored payload" in (error or "")
