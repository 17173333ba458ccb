"""Expiry: a job not started by its deadline ends `expired` and never runs, whether a
worker's claim finds it (claim_jobs, claim_ready_direct) or the Expirer pass does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.dedup import Unique
from conveyor.errors import EnqueueError
from conveyor.expiry import Expirer
from conveyor.maintenance import Pruner
from conveyor.store import Store
from conveyor.store.migrate import migrate
from conveyor.vocabulary import DISPATCHED, EXPIRED, QUEUED, RUNNING
from tests.apps import recording
from tests.conftest import Running, wait_until
from tests.factories import add_job
from tests.processes import Processes


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


def ago(db: psycopg.Connection[Any], seconds: float) -> datetime:
    """A time on PostgreSQL's clock, `seconds` ago (negative: in the future)."""
    row = db.execute(b"SELECT now() - %s * interval '1 second'", (seconds,)).fetchone()
    assert row is not None
    when: datetime = row[0]
    return when


def status_of(db: psycopg.Connection[Any], job_id: UUID) -> str:
    row = db.execute(b"SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def logged(db: psycopg.Connection[Any], job_id: UUID) -> list[tuple[int, str, str | None]]:
    rows = db.execute(
        b"SELECT attempt_number, status, log_message FROM job_logs WHERE job_id = %s ORDER BY id",
        (job_id,),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def test_enqueue_refuses_a_bad_deadline_and_writes_nothing(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="reset_password", queue="mail")
    def reset_password(payload: Any) -> None: ...

    bad: list[dict[str, Any]] = [
        {"expires_in": 60, "deadline": datetime.now(UTC)},
        {"deadline": datetime(2030, 1, 1)},  # naive on purpose
        {"expires_in": 0},
        {"expires_in": -5},
        {"expires_in": True},
        {"expires_in": "15m"},
        {"expires_in": float("inf")},
        {"expires_in": 1e300},
    ]
    for options in bad:
        with pytest.raises(EnqueueError, match=r"expires_in|deadline"):
            app.enqueue(reset_password, {}, **options)
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (0,)


def test_expires_in_counts_from_postgresql_now_and_deadline_is_stored_as_given(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="reset_password", queue="mail")
    def reset_password(payload: Any) -> None: ...

    relative = app.enqueue(reset_password, {}, expires_in=timedelta(minutes=15))
    many = app.enqueue_many(reset_password, [{}, {}], expires_in=90)
    deadline = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    absolute = app.enqueue(reset_password, {}, deadline=deadline)
    plain = app.enqueue(reset_password, {})
    rows = dict(
        db.execute(
            b"SELECT id, extract(epoch FROM expires_at - created)::float8 FROM jobs WHERE id <> %s",
            (absolute,),
        ).fetchall()
    )
    assert rows == {relative: 900.0, many[0]: 90.0, many[1]: 90.0, plain: None}
    stored = db.execute(b"SELECT expires_at FROM jobs WHERE id = %s", (absolute,)).fetchone()
    assert stored == (deadline,)


def test_enqueue_result_with_a_dedup_mode_takes_an_expiry_too(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="reset_password", queue="mail")
    def reset_password(payload: Any) -> None: ...

    first = app.enqueue_result(reset_password, {}, dedup=Unique("reset:ada"), expires_in=900)
    many = app.enqueue_many_results(
        reset_password, [{}], dedup=[Unique("reset:bob")], deadline=datetime(2031, 1, 1, tzinfo=UTC)
    )
    rows = dict(
        db.execute(b"SELECT id, extract(epoch FROM expires_at - created) FROM jobs").fetchall()
    )
    assert 899 <= rows[first.job_id] <= 901
    assert rows[many[0].job_id] > 86400  # the absolute deadline, years away


def test_a_task_default_expiry_applies_unless_the_enqueue_gives_its_own(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="otp", queue="mail", expires_in=timedelta(minutes=5))
    def otp(payload: Any) -> None: ...

    default = app.enqueue(otp, {})
    shorter = app.enqueue(otp, {}, expires_in=30)
    rows = dict(
        db.execute(b"SELECT id, extract(epoch FROM expires_at - created)::float8 FROM jobs")
    )
    assert rows == {default: 300.0, shorter: 30.0}
    with pytest.raises(ValueError, match="expires_in"):
        app.task(name="bad", expires_in=0)(lambda payload: None)


async def test_a_popped_job_past_its_deadline_is_expired_not_started(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    late = add_job(db, "work", status=DISPATCHED, expires_at=ago(db, 1))
    in_time = add_job(db, "work", status=DISPATCHED, expires_at=ago(db, -3600))
    claimed = await store.claim_jobs([str(late), str(in_time)], "w", 30)
    assert [job.id for job in claimed] == [in_time]
    assert status_of(db, late) == EXPIRED
    assert logged(db, late) == [(0, "expired", "not started before its deadline")]
    assert logged(db, in_time) == []


async def test_a_paused_queue_still_expires_its_late_jobs_at_claim(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    db.execute(b"INSERT INTO job_queues (name, is_active) VALUES ('paused', false)")
    late = add_job(db, "paused", status=DISPATCHED, expires_at=ago(db, 1), queue_row=False)
    on_time = add_job(db, "paused", status=DISPATCHED, expires_at=ago(db, -60), queue_row=False)
    assert await store.claim_jobs([str(late), str(on_time)], "w", 30) == []
    assert (status_of(db, late), status_of(db, on_time)) == (EXPIRED, QUEUED)


async def test_a_direct_claim_expires_late_jobs_instead_of_starting_them(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    late_queued = add_job(db, "a", priority=5, expires_at=ago(db, 1))
    late_buffered = add_job(db, "a", status=DISPATCHED, priority=6, expires_at=ago(db, 1))
    ready = add_job(db, "a", priority=100, expires_at=ago(db, -3600))
    claimed = await store.claim_ready_direct(["a"], 10, "w", 30)
    assert [job.id for job in claimed] == [ready]
    assert (status_of(db, late_queued), status_of(db, late_buffered)) == (EXPIRED, EXPIRED)
    assert [row[1] for row in logged(db, late_queued)] == ["expired"]


async def test_expirer_ends_only_queued_jobs_past_their_deadline(
    settings: Settings, store: Store, db: psycopg.Connection[Any]
) -> None:
    late = [add_job(db, "work", task="mail", attempt=1, expires_at=ago(db, 5)) for _ in range(3)]
    future = add_job(db, "work", expires_at=ago(db, -3600))
    no_deadline = add_job(db, "work")
    # Started in time: a deadline bounds the start, not the run.
    running = add_job(db, "work", status=RUNNING, worker="w", expires_at=ago(db, 5))
    # In Redis already: its claim expires it (the Expirer cannot take it out of a lane).
    buffered = add_job(db, "work", status=DISPATCHED, expires_at=ago(db, 5))
    expirer = Expirer(store, settings)
    expirer.BATCH = 2  # two batches: a backlog is drained in one pass
    expired = await expirer.run_once()
    assert sorted(job.id for job in expired) == sorted(late)
    assert {status_of(db, job) for job in late} == {EXPIRED}
    assert [status_of(db, job) for job in (future, no_deadline, running, buffered)] == [
        QUEUED,
        QUEUED,
        RUNNING,
        DISPATCHED,
    ]
    assert logged(db, late[0]) == [(1, "expired", "not started before its deadline")]
    assert await expirer.run_once() == []
    assert expirer.counts["expired"] == 3


async def test_admin_counts_lists_and_prunes_expired_jobs(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(**{"maintenance.retention": 3600})
    migrate(settings.database.url, settings.database.schema_name)
    fresh = add_job(db, "mail", status=EXPIRED, expires_at=ago(db, 60))
    old = add_job(db, "mail", status=EXPIRED, updated="2000-01-01T00:00:00Z")
    add_job(db, "mail", status="cancelled")
    async with Admin(settings) as admin:
        (queue,) = (await admin.stats()).queues
        assert (queue.name, queue.expired, queue.dead) == ("mail", 2, 0)
        page = await admin.list_jobs(queue="mail", status=EXPIRED)
        assert sorted(job.id for job in page.items) == sorted([fresh, old])
        assert {job.status for job in page.items} == {EXPIRED}
        everywhere = await admin.list_jobs(status=EXPIRED)
        assert len(everywhere.items) == 2
    store = await Store.open(settings, "test", 1)
    try:
        result = await Pruner(store, settings).run_once()
    finally:
        await store.close()
    assert result.jobs == 1
    assert status_of(db, fresh) == EXPIRED
    assert db.execute(b"SELECT count(*) FROM jobs WHERE id = %s", (old,)).fetchone() == (0,)


async def test_an_expired_job_never_runs_on_a_real_worker(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    ran: list[UUID] = []

    @app.task(name="reset_password", queue="mail")
    def reset_password(payload: Any) -> None:
        ran.append(payload["n"])

    late = app.enqueue(reset_password, {"n": 1}, deadline=ago(db, 60))
    in_time = app.enqueue(reset_password, {"n": 2}, expires_in=3600)
    # No maintenance: the worker's claim is what must refuse the late job.
    running.queuer(maintenance=False)
    running.worker(["mail"])
    await wait_until(lambda: app.get_job(in_time).status == "completed", message="in time")
    await wait_until(lambda: status_of(db, late) == EXPIRED, message="expired at claim")
    assert ran == [2]
    assert logged(db, late) == [(0, "expired", "not started before its deadline")]
    job = app.get_job(late)
    assert job.status == EXPIRED and job.attempt == 0 and job.started is None


async def test_expired_jobs_never_run_with_real_processes(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    late = app.enqueue_many("job", [{"n": n} for n in range(20)], expires_in=0.2)
    in_time = app.enqueue_many("job", [{"n": n} for n in range(20)], expires_in=3600)
    # Past the deadline on PostgreSQL's clock before any worker exists.
    await wait_until(
        lambda: (
            db.execute(
                b"SELECT bool_and(expires_at < now()) FROM jobs WHERE id = ANY(%s)", (late,)
            ).fetchone()
            == (True,)
        ),
        message="deadlines passed",
    )
    procs.queuer()
    procs.worker(processes=1, concurrency=4)

    def counts() -> dict[str, int]:
        rows = db.execute(b"SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
        return {row[0]: row[1] for row in rows}

    await wait_until(
        lambda: counts() == {"completed": 20, "expired": 20}, timeout=60, message="all ended"
    )
    executed = {row[0] for row in db.execute(b"SELECT job_id FROM executions")}
    assert executed == set(in_time)
    expired_logs = db.execute(
        b"SELECT count(*) FROM job_logs WHERE status = 'expired' AND job_id = ANY(%s)", (late,)
    ).fetchone()
    assert expired_logs == (20,)
