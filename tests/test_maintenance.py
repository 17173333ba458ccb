"""Maintenance passes on fabricated state, one `run_once()` each, no sleeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import redis

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.lanes import Keys, Lanes
from conveyor.maintenance import Pruner, Reconciler, Rescuer
from conveyor.queuer import Queuer
from conveyor.store import Store
from conveyor.store.listen import Listener, leader_lock_id
from conveyor.worker.outcome import COMPLETED, Outcome, outcome_params
from tests.conftest import Running, wait_until
from tests.factories import add_job, add_log, add_queue, add_worker


def insert_job(db: psycopg.Connection[Any], status: str, **columns: Any) -> uuid.UUID:
    return add_job(db, "work", task="job", status=status, payload={}, **columns)


def insert_worker(db: psycopg.Connection[Any], worker_id: str, heartbeat_age: float) -> None:
    add_worker(db, worker_id, ["work"], silent_for=heartbeat_age)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


@pytest.fixture
async def lanes(settings: Settings) -> AsyncIterator[Lanes]:
    opened = Lanes.open(settings)
    yield opened
    await opened.close()


async def test_rescuer_requeues_expired_lease_and_kills_last_attempt(
    settings: Settings, db: psycopg.Connection[Any], store: Store
) -> None:
    insert_worker(db, "w-live", 0)
    expired = insert_job(
        db,
        "running",
        attempt=1,
        max_attempts=3,
        lease_token=1,
        worker_id="w-live",
        lease_expires_at="2000-01-01T00:00:00Z",
        started="2000-01-01T00:00:00Z",
    )
    last = insert_job(
        db,
        "running",
        attempt=3,
        max_attempts=3,
        lease_token=3,
        worker_id="w-live",
        lease_expires_at="2000-01-01T00:00:00Z",
    )
    healthy = insert_job(
        db,
        "running",
        attempt=1,
        lease_token=1,
        worker_id="w-live",
        lease_expires_at="2100-01-01T00:00:00Z",
    )
    result = await Rescuer(store, settings).run_once()
    assert result.requeued == [expired] and result.dead == [last]
    rows = dict(db.execute(b"SELECT id, status FROM jobs").fetchall())
    assert rows == {expired: "queued", last: "dead", healthy: "running"}
    logs = db.execute(
        b"SELECT job_id, status, log_message FROM job_logs ORDER BY status"
    ).fetchall()
    assert logs == [(last, "dead", "worker lost"), (expired, "lost", "worker lost")]


async def test_rescuer_rescues_jobs_of_a_silent_worker(
    settings: Settings, db: psycopg.Connection[Any], store: Store
) -> None:
    insert_worker(db, "w-silent", heartbeat_age=3600)
    job = insert_job(
        db,
        "running",
        attempt=1,
        lease_token=1,
        worker_id="w-silent",
        lease_expires_at="2100-01-01T00:00:00Z",
    )
    orphan = insert_job(
        db,
        "running",
        attempt=1,
        lease_token=1,
        worker_id="never-registered",
        lease_expires_at="2100-01-01T00:00:00Z",
    )
    result = await Rescuer(store, settings).run_once()
    assert sorted(result.requeued) == sorted([job, orphan])


async def test_rescuer_loses_the_race_to_a_completion(
    settings: Settings, db: psycopg.Connection[Any], app: Conveyor, store: Store
) -> None:
    """Scenario 4: hold the rescuer between choosing and writing; the worker completes."""
    insert_worker(db, "w", 0)
    done = insert_job(
        db,
        "running",
        attempt=1,
        lease_token=7,
        worker_id="w",
        lease_expires_at="2000-01-01T00:00:00Z",
    )
    reclaimed = insert_job(
        db,
        "running",
        attempt=1,
        lease_token=3,
        worker_id="w",
        lease_expires_at="2000-01-01T00:00:00Z",
    )
    rescuer = Rescuer(store, settings)

    async def in_the_gap() -> None:
        outcome = Outcome(done, 7, COMPLETED, 0.01)
        db.execute(store.queries["record_outcomes"], outcome_params([outcome]))
        # Meanwhile the other job was rescued elsewhere and claimed again (new token).
        db.execute(
            b"UPDATE jobs SET lease_token = 4, attempt = 2, "
            b"lease_expires_at = now() + interval '1 hour' WHERE id = %s",
            (reclaimed,),
        )

    rescuer.before_write = in_the_gap
    result = await rescuer.run_once()
    assert result.total == 0
    rows = dict(db.execute(b"SELECT id, (status, attempt, lease_token) FROM jobs").fetchall())
    assert rows[done] == ("completed", "1", "7")
    assert rows[reclaimed] == ("running", "2", "4")
    assert db.execute(b"SELECT status FROM job_logs").fetchall() == [("completed",)]


async def test_stale_outcome_changes_nothing(db: psycopg.Connection[Any], store: Store) -> None:
    job = insert_job(db, "running", attempt=2, lease_token=2, worker_id="new")
    stale = Outcome(job, 1, COMPLETED, 0.5)
    applied = db.execute(store.queries["record_outcomes"], outcome_params([stale])).fetchall()
    assert applied == []
    assert db.execute(b"SELECT status, lease_token FROM jobs").fetchone() == ("running", 2)
    assert db.execute(b"SELECT count(*) FROM job_logs").fetchone() == (0,)


async def test_reconciler_requeues_dispatched_jobs_missing_from_redis(
    settings: Settings, db: psycopg.Connection[Any], store: Store, lanes: Lanes
) -> None:
    """Scenario 6 and 9: a queuer killed before its push, or an evicted lane."""
    lost = insert_job(db, "dispatched", dispatched_at="2000-01-01T00:00:00Z")
    present = insert_job(db, "dispatched", dispatched_at="2000-01-01T00:00:00Z")
    fresh = insert_job(db, "dispatched", dispatched_at="2100-01-01T00:00:00Z")
    client = redis.Redis.from_url(settings.redis.url)
    client.lpush(Keys(settings.redis.key_prefix).lane("work", "normal"), str(present))
    client.close()
    result = await Reconciler(store, lanes, settings).run_once()
    assert result.requeued == [lost]
    rows = dict(db.execute(b"SELECT id, status FROM jobs").fetchall())
    assert rows == {lost: "queued", present: "dispatched", fresh: "dispatched"}


async def test_wiped_redis_is_rebuilt_from_postgres(
    settings: Settings, db: psycopg.Connection[Any], store: Store, lanes: Lanes
) -> None:
    """Scenario 7 on fabricated state: the epoch key is gone, so is every lane."""
    queuer = Queuer(settings, store, lanes)
    try:
        await queuer.sync_epoch()
        job = insert_job(db, "dispatched", dispatched_at="2000-01-01T00:00:00Z")
        db.execute(b"UPDATE job_queues SET is_active = false WHERE name = 'work'")
        client = redis.Redis.from_url(settings.redis.url)
        keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}*"))
        client.delete(*keys)
        await queuer.sync_epoch()
        assert db.execute(b"SELECT status FROM jobs WHERE id = %s", (job,)).fetchone() == (
            "queued",
        )
        paused = client.smembers(Keys(settings.redis.key_prefix).paused)
        assert paused == {b"work"}, "pauses are restored from PostgreSQL"
        client.close()
    finally:
        await queuer.close()


async def test_duplicate_dispatch_runs_once(
    app: Conveyor, running: Running, db: psycopg.Connection[Any], settings: Settings
) -> None:
    """Scenario 5: the same id pushed twice; one claim wins, the duplicate is dropped."""
    runs: list[str] = []

    @app.task(name="job", queue="work")
    def job(payload: Any) -> None:
        runs.append("ran")

    job_id = app.enqueue(job, {})
    db.execute(b"UPDATE jobs SET status = 'dispatched', dispatched_at = now()")
    client = redis.Redis.from_url(settings.redis.url)
    lane = Keys(settings.redis.key_prefix).lane("work", "normal")
    client.lpush(lane, str(job_id), str(job_id))
    client.close()
    worker = running.worker(["work"], concurrency=1)
    await wait_until(lambda: app.get_job(job_id).status == "completed", message="completion")
    await wait_until(lambda: worker.counts["dropped"] == 1, message="the duplicate dropped")
    assert runs == ["ran"]


async def test_deleted_rows_are_dropped_and_the_worker_goes_on(
    app: Conveyor, running: Running, db: psycopg.Connection[Any], settings: Settings
) -> None:
    """Scenario 11: the row vanished before the claim, or while the job ran."""
    gate = asyncio.Event()

    @app.task(name="slow", queue="work")
    async def slow(payload: Any) -> None:
        await gate.wait()

    @app.task(name="quick", queue="work")
    def quick(payload: Any) -> None:
        return None

    ghost = uuid.uuid4()
    client = redis.Redis.from_url(settings.redis.url)
    client.lpush(Keys(settings.redis.key_prefix).lane("work", "normal"), str(ghost))
    client.close()
    running.queuer()
    worker = running.worker(["work"], concurrency=2)
    doomed = app.enqueue(slow, {})
    await wait_until(lambda: app.get_job(doomed).status == "running", message="slow job running")
    db.execute(b"DELETE FROM jobs WHERE id = %s", (doomed,))
    gate.set()
    assert worker.completer is not None
    await wait_until(lambda: worker.completer.counts["stale"] == 1, message="stale completion")
    after = app.enqueue(quick, {})
    await wait_until(lambda: app.get_job(after).status == "completed", message="next job")
    assert worker.counts["dropped"] >= 1


async def test_pruner_deletes_only_what_is_past_retention(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(
        **{"maintenance.retention": 3600, "maintenance.dead_retention": 7200}
    )
    from conveyor.store.migrate import migrate

    migrate(settings.database.url, settings.database.schema_name)
    old_done = insert_job(db, "completed", updated="2000-01-01T00:00:00Z")
    insert_job(db, "cancelled", updated="2000-01-01T00:00:00Z")
    fresh_done = insert_job(db, "completed")
    dead_recent = insert_job(db, "dead", updated=_ago(db, 5000))
    dead_old = insert_job(db, "dead", updated=_ago(db, 9000))
    waiting = insert_job(db, "queued", updated="2000-01-01T00:00:00Z")
    for job in (old_done, fresh_done, dead_old):
        add_log(db, job, queue="work", task="job", ago=7200)
    insert_worker(db, "gone", heartbeat_age=10_000)
    store = await Store.open(settings, "test", 1)
    try:
        result = await Pruner(store, settings).run_once()
    finally:
        await store.close()
    assert (result.jobs, result.logs, result.workers) == (3, 2, 1)
    left = {row[0] for row in db.execute(b"SELECT id FROM jobs")}
    assert left == {fresh_done, dead_recent, waiting}
    logs = {row[0] for row in db.execute(b"SELECT job_id FROM job_logs")}
    assert logs == {fresh_done}


def _ago(db: psycopg.Connection[Any], seconds: int) -> Any:
    row = db.execute(b"SELECT now() - %s * interval '1 second'", (seconds,)).fetchone()
    assert row is not None
    return row[0]


async def test_reconciler_syncs_the_paused_set_from_postgres(
    settings: Settings, db: psycopg.Connection[Any], store: Store, lanes: Lanes
) -> None:
    add_queue(db, "held", active=False)
    add_queue(db, "free")
    client = redis.Redis.from_url(settings.redis.url)
    paused_key = Keys(settings.redis.key_prefix).paused
    client.sadd(paused_key, "free")  # a resume that never reached Redis
    await Reconciler(store, lanes, settings).run_once()
    assert client.smembers(paused_key) == {b"held"}
    client.close()


async def test_leadership_passes_on_when_the_leader_closes(settings: Settings) -> None:
    """The lock lives on the LISTEN session; closing it (its task still waiting for
    notifications) hands maintenance to the next queuer within a second."""
    wakes: list[str] = []
    first = Listener(settings, lambda: wakes.append("first"), lead=True)
    second = Listener(settings, lambda: wakes.append("second"), lead=True)
    try:
        await first.ensure_open()
        await second.ensure_open()
        assert (first.is_leader, second.is_leader) == (True, False)
        await first.close()
        assert not first.alive
        await wait_until(lambda: second.is_leader, message="the second to lead")
    finally:
        await first.close()
        await second.close()


async def test_a_queuer_that_does_not_lead_still_dispatches(
    settings: Settings, db: psycopg.Connection[Any], app: Conveyor, running: Running
) -> None:
    """Asking for the leader lock must not wait on the LISTEN session, which psycopg keeps
    locked while it waits for notifications."""
    lock = leader_lock_id(settings.database.schema_name)
    assert db.execute(b"SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone() == (True,)

    @app.task(name="job", queue="work")
    def job(payload: Any) -> None:
        return None

    queuer = running.queuer()
    await wait_until(lambda: queuer.ready, message="the first pass")
    app.enqueue_many(job, [{}] * 3)
    await wait_until(lambda: queuer.counts["dispatched"] == 3, message="dispatch")
    assert not queuer.is_leader
