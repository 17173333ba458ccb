"""Batches: jobs enqueued together, counted by PostgreSQL as each ends (whichever statement
ends it), with callbacks enqueued exactly once when the sealed batch has nothing pending."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pydantic
import pytest

from conveyor import BatchClosed, BatchNotFound, EnqueueError, PayloadError, UnknownTaskError
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.maintenance import Pruner
from conveyor.store import Store
from conveyor.store.migrate import migrate
from conveyor.vocabulary import (
    BATCH_FAILED,
    BATCH_RUNNING,
    BATCH_SUCCEEDED,
    CANCELLED,
    COMPLETED,
    DEAD,
    EXPIRED,
    QUEUED,
    RUNNING,
)
from tests.apps import recording
from tests.conftest import Running, wait_until
from tests.factories import add_batch
from tests.processes import Processes, queue_check

Db = psycopg.Connection[Any]


@pytest.fixture
def tasks(app: Conveyor) -> Conveyor:
    @app.task(name="part", queue="work", max_attempts=1)
    def part(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise RuntimeError("planned failure")

    @app.task(name="report", queue="callbacks", priority=10)
    def report(payload: dict[str, Any]) -> None:
        return None

    return app


def set_status(db: Db, ids: list[UUID], status: str) -> None:
    """A job's end as any statement would write it (the counting is the trigger's)."""
    db.execute(b"UPDATE jobs SET status = %s WHERE id = ANY(%s)", (status, ids))


def callbacks(db: Db, batch_id: UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = db.execute(
        b"SELECT queue_name, payload FROM jobs WHERE batch_id IS NULL "
        b"AND payload -> 'batch' ->> 'id' = %s ORDER BY payload ->> 'kind'",
        (str(batch_id),),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def make_batch(app: Conveyor, count: int = 3) -> tuple[UUID, list[UUID]]:
    with app.batch(
        description="nightly import",
        on_complete=("report", {"kind": "complete"}),
        on_success=("report", {"kind": "success"}),
    ) as batch:
        ids = batch.enqueue_many("part", [{"n": n} for n in range(count)])
    return batch.id, ids


def test_counts_follow_fabricated_ends_and_callbacks_fire_once(tasks: Conveyor, db: Db) -> None:
    batch_id, ids = make_batch(tasks)
    info = tasks.get_batch(batch_id)
    assert (info.state, info.total, info.pending, info.succeeded, info.failed) == (
        BATCH_RUNNING,
        3,
        3,
        0,
        0,
    )
    assert info.description == "nightly import"
    assert (info.on_complete_task, info.on_success_task) == ("report", "report")
    set_status(db, ids[:2], COMPLETED)
    info = tasks.get_batch(batch_id)
    assert (info.pending, info.succeeded, info.done) == (1, 2, 2)
    assert callbacks(db, batch_id) == []

    set_status(db, ids[2:], COMPLETED)
    info = tasks.get_batch(batch_id)
    assert (info.state, info.pending, info.succeeded, info.failed) == (BATCH_SUCCEEDED, 0, 3, 0)
    summary = {
        "id": str(batch_id),
        "description": "nightly import",
        "total": 3,
        "succeeded": 3,
        "failed": 0,
    }
    assert callbacks(db, batch_id) == [
        ("callbacks", {"kind": "complete", "batch": summary}),
        ("callbacks", {"kind": "success", "batch": summary}),
    ]
    ids_of_callbacks = db.execute(
        b"SELECT id, priority, status FROM jobs WHERE batch_id IS NULL ORDER BY payload ->> 'kind'"
    ).fetchall()
    assert [row[0] for row in ids_of_callbacks] == [info.complete_job_id, info.success_job_id]
    assert {(row[1], row[2]) for row in ids_of_callbacks} == {(10, QUEUED)}

    # A later change of a finished job's status moves the counts, never a second callback.
    set_status(db, ids[:1], QUEUED)
    set_status(db, ids[:1], COMPLETED)
    assert len(callbacks(db, batch_id)) == 2
    assert tasks.get_batch(batch_id).pending == 0


def test_a_failed_job_fires_on_complete_but_not_on_success(tasks: Conveyor, db: Db) -> None:
    batch_id, ids = make_batch(tasks, count=4)
    set_status(db, ids[:1], COMPLETED)
    set_status(db, ids[1:2], DEAD)
    set_status(db, ids[2:3], CANCELLED)
    set_status(db, ids[3:], EXPIRED)
    info = tasks.get_batch(batch_id)
    assert (info.state, info.succeeded, info.failed, info.pending) == (BATCH_FAILED, 1, 3, 0)
    found = callbacks(db, batch_id)
    assert [payload["kind"] for _, payload in found] == ["complete"]
    assert found[0][1]["batch"]["failed"] == 3
    assert info.complete_job_id is not None and info.success_job_id is None


def test_retried_dead_job_is_pending_again(tasks: Conveyor, db: Db) -> None:
    batch_id, ids = make_batch(tasks, count=2)
    set_status(db, ids[:1], DEAD)
    info = tasks.get_batch(batch_id)
    assert (info.pending, info.failed) == (1, 1)
    set_status(db, ids[:1], QUEUED)  # an operator's retry
    info = tasks.get_batch(batch_id)
    assert (info.pending, info.failed) == (2, 0)
    set_status(db, ids, COMPLETED)
    assert tasks.get_batch(batch_id).state == BATCH_SUCCEEDED
    assert [payload["kind"] for _, payload in callbacks(db, batch_id)] == ["complete", "success"]


def test_deleting_an_unfinished_job_counts_it_failed(tasks: Conveyor, db: Db) -> None:
    batch_id, ids = make_batch(tasks, count=2)
    set_status(db, ids[:1], COMPLETED)
    db.execute(b"DELETE FROM jobs WHERE id = ANY(%s)", (ids,))  # retention of one, purge
    info = tasks.get_batch(batch_id)
    assert (info.total, info.pending, info.succeeded, info.failed) == (2, 0, 1, 1)
    assert [payload["kind"] for _, payload in callbacks(db, batch_id)] == ["complete"]


def test_an_empty_batch_finishes_when_sealed(tasks: Conveyor, db: Db) -> None:
    with tasks.batch(on_success=("report", {"kind": "success"})) as batch:
        pass
    info = tasks.get_batch(batch.id)
    assert (info.state, info.total) == (BATCH_SUCCEEDED, 0)
    assert len(callbacks(db, batch.id)) == 1


def test_jobs_ended_before_the_seal_finish_at_the_seal(tasks: Conveyor, db: Db) -> None:
    """Inside the caller's transaction the jobs can end (there) before the block does."""
    with psycopg.connect(tasks.settings.database.url) as conn:
        conn.execute(f'SET search_path TO "{tasks.settings.database.schema_name}"'.encode())
        with tasks.batch(connection=conn, on_complete=("report", {"kind": "c"})) as batch:
            ids = batch.enqueue_many("part", [{}, {}])
            set_status(conn, ids, COMPLETED)
            # Open: no callback yet, however many of its jobs have ended.
            row = conn.execute(b"SELECT pending, sealed, finished FROM batches").fetchone()
            assert row == (0, None, None)
        conn.commit()
    info = tasks.get_batch(batch.id)
    assert (info.state, info.succeeded) == (BATCH_SUCCEEDED, 2)
    assert len(callbacks(db, batch.id)) == 1


async def test_two_last_jobs_ending_at_once_fire_one_callback(
    tasks: Conveyor, settings: Settings, db: Db
) -> None:
    """Each transaction ends one of the last two jobs: the second waits on the batch row,
    then counts from the first's committed counts, so exactly one sees pending reach 0."""
    batch_id, ids = make_batch(tasks, count=2)
    url, schema = settings.database.url, settings.database.schema_name
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        for conn in (first, second):
            conn.execute(f'SET search_path TO "{schema}"'.encode())
        set_status(first, ids[:1], COMPLETED)  # holds the batch row until it commits
        second_pid = second.info.backend_pid
        ending = asyncio.create_task(asyncio.to_thread(set_status, second, ids[1:], COMPLETED))

        def second_waits() -> bool:
            row = db.execute(
                b"SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (second_pid,)
            ).fetchone()
            return bool(row and row[0] == "Lock")

        await wait_until(second_waits, message="the second end waiting on the batch row")
        first.commit()
        await ending
        second.commit()
    info = tasks.get_batch(batch_id)
    assert (info.pending, info.succeeded, info.state) == (0, 2, BATCH_SUCCEEDED)
    assert [payload["kind"] for _, payload in callbacks(db, batch_id)] == ["complete", "success"]


async def test_real_worker_runs_the_batch_and_its_callbacks(
    tasks: Conveyor, running: Running, db: Db
) -> None:
    seen: list[dict[str, Any]] = []

    @tasks.task(name="collect", queue="callbacks")
    def collect(payload: dict[str, Any]) -> None:
        seen.append(payload)

    async with tasks.abatch(
        description="async",
        on_complete=("collect", {"kind": "complete"}),
        on_success=("collect", {"kind": "success"}),
    ) as batch:
        await batch.enqueue_many("part", [{"n": n} for n in range(5)])
        await batch.enqueue("part", {"fail": True})
    running.queuer()
    running.worker(["work", "callbacks"])
    await wait_until(lambda: len(seen) == 1, message="the on_complete callback")
    info = await tasks.aget_batch(batch.id)
    assert (info.state, info.total, info.succeeded, info.failed) == (BATCH_FAILED, 6, 5, 1)
    assert seen[0]["kind"] == "complete"
    assert seen[0]["batch"] == {
        "id": str(batch.id),
        "description": "async",
        "total": 6,
        "succeeded": 5,
        "failed": 1,
    }
    await wait_until(
        lambda: (
            db.execute(b"SELECT count(*) FROM jobs WHERE status <> %s", (COMPLETED,)).fetchone()
            == (1,)
        ),
        message="every job but the failed one completed",
    )
    assert db.execute(b"SELECT count(*) FROM jobs WHERE status = %s", (RUNNING,)).fetchone() == (0,)
    assert len(seen) == 1


def test_rolled_back_caller_transaction_leaves_no_batch(tasks: Conveyor, db: Db) -> None:
    with psycopg.connect(tasks.settings.database.url) as conn:
        with tasks.batch(connection=conn, on_complete=("report", None)) as batch:
            batch.enqueue("part", {})
        conn.rollback()
    with pytest.raises(BatchNotFound):
        tasks.get_batch(batch.id)
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (0,)
    assert db.execute(b"SELECT count(*) FROM batches").fetchone() == (0,)


def test_an_exception_in_the_block_leaves_nothing(tasks: Conveyor, db: Db) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"), tasks.batch() as batch:
        batch.enqueue_many("part", [{}, {}])
        raise RuntimeError("changed my mind")
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (0,)
    assert db.execute(b"SELECT count(*) FROM batches").fetchone() == (0,)


def test_bad_input_is_refused_and_changes_nothing(tasks: Conveyor, db: Db) -> None:
    with pytest.raises(UnknownTaskError, match="nope"), tasks.batch(on_complete=("nope", None)):
        pass
    with pytest.raises(EnqueueError, match="pair"), tasks.batch(on_success="report"):  # type: ignore[arg-type]
        pass
    with pytest.raises(EnqueueError, match="JSON object"), tasks.batch(on_success=("report", [1])):
        pass
    taken = ("report", {"batch": 1})
    with pytest.raises(EnqueueError, match="'batch' key"), tasks.batch(on_success=taken):
        pass
    with pytest.raises(EnqueueError, match="description"), tasks.batch(description="x" * 1001):
        pass
    with pytest.raises(EnqueueError, match="NUL"), tasks.batch(description="a\x00b"):
        pass
    assert db.execute(b"SELECT count(*) FROM batches").fetchone() == (0,)

    with tasks.batch() as batch:
        batch.enqueue("part", {"n": 1})
        with pytest.raises(PayloadError):
            batch.enqueue("part", {"bad": object()})
        with pytest.raises(TypeError, match="idempotency_key"):
            batch.enqueue("part", {}, idempotency_key="k")  # type: ignore[call-arg]
    with pytest.raises(BatchClosed, match="closed"):
        batch.enqueue("part", {"n": 2})
    info = tasks.get_batch(batch.id)
    assert (info.total, info.pending) == (1, 1)
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (1,)

    with pytest.raises(BatchNotFound):
        tasks.get_batch(uuid4())
    with pytest.raises(ValueError, match="not a batch id"):
        tasks.get_batch("not-a-uuid")


def test_a_sealed_batch_refuses_jobs_in_the_database(tasks: Conveyor, db: Db) -> None:
    """The statement itself refuses, whatever the client believes."""
    with tasks.batch() as batch:
        batch.enqueue("part", {})
    statements = tasks._producer(None)
    with pytest.raises(BatchClosed):
        statements.enqueue_into_batch(batch.id, "[]", [uuid4()])
    with pytest.raises(BatchNotFound):
        statements.enqueue_into_batch(uuid4(), "[]", [uuid4()])
    assert tasks.get_batch(batch.id).total == 1


def test_jobs_outside_batches_are_not_counted(tasks: Conveyor, db: Db) -> None:
    job_id = tasks.enqueue("part", {})
    set_status(db, [job_id], COMPLETED)
    assert db.execute(b"SELECT batch_id FROM jobs").fetchone() == (None,)
    assert db.execute(b"SELECT count(*) FROM batches").fetchone() == (0,)


@pytest.mark.fault
async def test_two_worker_processes_run_the_callback_exactly_once(
    app: Conveyor, procs: Processes, db: Db
) -> None:
    app.tasks.update(recording.app.tasks)
    with app.batch(
        description="processes",
        on_complete=("batch_done", {"kind": "complete"}),
        on_success=("batch_done", {"kind": "success"}),
    ) as batch:
        ids = batch.enqueue_many("job", [{"n": n} for n in range(300)])
        ids += batch.enqueue_many("job", [{"fail": True}] * 3)  # dead after three attempts
    procs.queuer()
    procs.queuer()
    procs.worker(processes=1, concurrency=8)
    procs.worker(processes=1, concurrency=8)

    def callback_ran() -> bool:
        info = app.get_batch(batch.id)
        if info.complete_job_id is None:
            return False
        return app.get_job(info.complete_job_id).status == COMPLETED

    await wait_until(callback_ran, timeout=120, interval=0.2, message="the on_complete callback")
    info = app.get_batch(batch.id)
    assert (info.state, info.total, info.succeeded, info.failed) == (BATCH_FAILED, 303, 300, 3)
    assert queue_check(db, ids) == {COMPLETED: 300, DEAD: 3}
    assert info.complete_job_id is not None and info.success_job_id is None
    runs = db.execute(
        b"SELECT count(*) FROM executions WHERE job_id = %s", (info.complete_job_id,)
    ).fetchone()
    assert runs == (1,)
    found = callbacks(db, batch.id)
    assert [payload["kind"] for _, payload in found] == ["complete"]
    assert found[0][1]["batch"]["succeeded"] == 300
    pids = db.execute(b"SELECT count(DISTINCT pid) FROM executions").fetchone()
    assert pids == (2,), "both worker processes took part"


class Summary(pydantic.BaseModel):
    id: UUID
    description: str | None
    total: int
    succeeded: int
    failed: int


class Report(pydantic.BaseModel):
    file: str
    batch: Summary


def test_a_callback_payload_model_may_declare_the_batch(tasks: Conveyor, db: Db) -> None:
    @tasks.task(name="typed_report", queue="callbacks")
    def typed_report(payload: Report) -> None: ...

    with pytest.raises(PayloadError, match="file"), tasks.batch(on_complete=(typed_report, {})):
        pass
    assert db.execute(b"SELECT count(*) FROM batches").fetchone() == (0,)
    with tasks.batch(on_complete=(typed_report, {"file": "a.csv"})) as batch:
        ids = batch.enqueue_many("part", [{}, {}])
    set_status(db, ids, DEAD)
    ((_, payload),) = callbacks(db, batch.id)
    report = typed_report.decode_payload(payload)
    assert (report.file, report.batch.id, report.batch.failed) == ("a.csv", batch.id, 2)


async def test_the_pruner_removes_finished_batches_past_retention(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        **{"maintenance.retention": 3600, "maintenance.dead_retention": 7200}
    )
    migrate(settings.database.url, settings.database.schema_name)
    with psycopg.connect(settings.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        old, recent, unfinished = (add_batch(db) for _ in range(3))
        for batch_id, age in ((old, 9000), (recent, 5000)):
            db.execute(
                b"UPDATE batches SET finished = now() - %s * interval '1 second' WHERE id = %s",
                (age, batch_id),
            )
        db.execute(b"UPDATE batches SET created = '2000-01-01' WHERE id = %s", (unfinished,))
        store = await Store.open(settings, "test", 1)
        try:
            result = await Pruner(store, settings).run_once()
        finally:
            await store.close()
        assert result.batches == 1
        left = {row[0] for row in db.execute(b"SELECT id FROM batches")}
        assert left == {recent, unfinished}


async def test_a_block_may_outlast_the_statement_deadline(
    settings_factory: Callable[..., Settings],
) -> None:
    """The deadline bounds each statement, not the caller's work between two of them."""
    settings = settings_factory(**{"liveness.database_deadline": 0.5})
    migrate(settings.database.url, settings.database.schema_name)
    app = Conveyor(settings)

    @app.task(name="part", queue="work")
    def part(payload: Any) -> None: ...

    try:
        async with app.abatch() as batch:
            await batch.enqueue("part", {})
            await asyncio.sleep(1.0)  # the block's own work, longer than the deadline
            await batch.enqueue("part", {})
        assert (await app.aget_batch(batch.id)).total == 2
    finally:
        await app.aclose()


async def test_async_batch_in_the_callers_transaction(tasks: Conveyor, db: Db) -> None:
    url = tasks.settings.database.url
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with tasks.abatch(connection=conn, on_success=("report", None)) as batch:
            await batch.enqueue_many("part", [{}, {}])
        await conn.rollback()
    assert db.execute(b"SELECT count(*) FROM batches").fetchone() == (0,)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with tasks.abatch(connection=conn, on_success=("report", None)) as batch:
            await batch.enqueue_many("part", [{}, {}])
        await conn.commit()
    assert (await tasks.aget_batch(batch.id)).total == 2
    await tasks.aclose()
