"""Workflows: a job enqueued with `depends_on` waits in PostgreSQL and is queued by the
statement that ends its last parent; chains pass each result on, a parent that did not
complete cancels its waiting descendants (or, rule "run", lets them run), and a child
enqueued while its parent completes counts that parent exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg.types.json import Jsonb

from conveyor import EnqueueError, JobContext, JobFailed, Unique
from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.ids import uuid7
from conveyor.store import Store
from conveyor.vocabulary import (
    CANCELLED,
    COMPLETED,
    LOG_CANCELLED,
    LOG_COMPLETED,
    QUEUED,
    RUNNING,
    WAITING,
)
from conveyor.worker.outcome import Outcome
from tests.conftest import Running, status_counts, wait_until
from tests.factories import add_job, job_edges, lock_waiters

Db = psycopg.Connection[Any]
QUEUE = "flow"


def declare(app: Conveyor) -> dict[str, Any]:
    @app.task(queue=QUEUE)
    def start(n: int) -> int:
        return n * 10

    @app.task(queue=QUEUE)
    def plus_one(_: Any, ctx: JobContext) -> int:
        return int(ctx.parent_result) + 1

    @app.task(queue=QUEUE)
    def gather(_: Any, ctx: JobContext) -> dict[str, Any]:
        return {"results": ctx.parent_results, "ids": [str(i) for i in ctx.parent_ids]}

    @app.task(queue=QUEUE, max_attempts=1)
    def fail(_: Any) -> None:
        raise RuntimeError("parent failed on purpose")

    return {"start": start, "plus_one": plus_one, "gather": gather, "fail": fail}


def status(db: Db, job_id: UUID) -> str:
    row = db.execute(b"SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def child_row(db: Db, job_id: UUID) -> tuple[str, int | None, Any]:
    row = db.execute(
        b"SELECT status, pending_parents, parent_results FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


async def test_a_chain_hands_each_result_to_the_next_step(
    app: Conveyor, running: Running, db: Db
) -> None:
    tasks = declare(app)
    chain = app.chain(tasks["start"].s(4), tasks["plus_one"].s(), tasks["plus_one"].s())
    assert len(chain.ids) == 3
    # Written in one transaction: the later steps wait in PostgreSQL, out of Redis.
    assert [status(db, job_id) for job_id in chain.ids[1:]] == [WAITING, WAITING]
    running.queuer()
    running.worker([QUEUE])
    assert await app.await_job(chain.last, timeout=30) == 42
    assert job_edges(db, chain.ids[2]) == [(chain.ids[1], True)]


async def test_a_child_waits_for_every_parent_and_gets_their_results_in_order(
    app: Conveyor, running: Running, db: Db
) -> None:
    tasks = declare(app)
    first = app.enqueue(tasks["start"], 1)
    second = app.enqueue(tasks["start"], 2)
    child = app.enqueue(tasks["gather"], None, depends_on=[second, str(first)])
    assert child_row(db, child)[:2] == (WAITING, 2)
    running.queuer()
    running.worker([QUEUE])
    result = await app.await_job(child, timeout=30)
    assert result == {"results": [20, 10], "ids": [str(second), str(first)]}


async def test_a_chord_calls_back_once_with_every_result(app: Conveyor, running: Running) -> None:
    tasks = declare(app)
    chord = app.chord([tasks["start"].s(n) for n in range(20)], tasks["gather"].s())
    running.queuer()
    running.worker([QUEUE], concurrency=5)
    result = await app.await_job(chord.callback, timeout=30)
    assert result["results"] == [n * 10 for n in range(20)]
    assert result["ids"] == [str(job_id) for job_id in chord.header]


async def test_a_group_enqueues_its_jobs_together_async_too(
    app: Conveyor, running: Running, db: Db
) -> None:
    tasks = declare(app)
    group = await app.agroup([tasks["start"].s(1), tasks["start"].s(2)])
    chain = await app.achain(tasks["start"].s(5), tasks["plus_one"].s())
    running.queuer()
    running.worker([QUEUE])
    assert [await app.await_job(job_id, timeout=30) for job_id in group.ids] == [10, 20]
    assert await app.await_job(chain.last, timeout=30) == 51


async def test_a_dead_parent_cancels_its_waiting_descendants_unless_they_run_anyway(
    app: Conveyor, running: Running, db: Db
) -> None:
    tasks = declare(app)
    parent = app.enqueue(tasks["fail"])
    child = app.enqueue(tasks["gather"], None, depends_on=[parent])
    grandchild = app.enqueue(tasks["gather"], None, depends_on=[child])
    runs_anyway = app.enqueue(tasks["gather"], None, depends_on=[parent], on_parent_failure="run")
    running.queuer()
    running.worker([QUEUE])
    result = await app.await_job(runs_anyway, timeout=30)
    assert result == {"results": [None], "ids": [str(parent)]}
    # The cancellation cascades in the statement that ended the parent.
    assert status(db, child) == CANCELLED
    assert status(db, grandchild) == CANCELLED
    for job_id in (child, grandchild):
        logs = db.execute(
            b"SELECT status, log_message FROM job_logs WHERE job_id = %s", (job_id,)
        ).fetchall()
        assert len(logs) == 1
        assert logs[0][0] == LOG_CANCELLED
        assert "on_parent_failure: cancel" in logs[0][1]
    with pytest.raises(JobFailed):
        await app.await_job(grandchild, timeout=5)


async def test_a_parent_that_already_ended_counts_at_enqueue(
    app: Conveyor, running: Running, db: Db
) -> None:
    tasks = declare(app)
    done = add_job(db, QUEUE, task=tasks["start"].name, status=COMPLETED, result=Jsonb(7))
    dead = add_job(db, QUEUE, task=tasks["fail"].name, status="dead")
    queued_now = app.enqueue(tasks["gather"], None, depends_on=[done])
    status_, pending, results = child_row(db, queued_now)
    assert (status_, pending) == (QUEUED, 0)
    assert results == [{"id": str(done), "result": 7}]
    cancelled_now = app.enqueue(tasks["gather"], None, depends_on=[done, dead])
    assert status(db, cancelled_now) == CANCELLED
    runs = app.enqueue(tasks["gather"], None, depends_on=[dead], on_parent_failure="run")
    assert status(db, runs) == QUEUED
    running.queuer()
    running.worker([QUEUE])
    assert await app.await_job(queued_now, timeout=30) == {"results": [7], "ids": [str(done)]}
    assert await app.await_job(runs, timeout=30) == {"results": [None], "ids": [str(dead)]}


async def test_a_waiting_job_can_be_cancelled_and_its_children_follow(
    app: Conveyor, db: Db
) -> None:
    tasks = declare(app)
    parent = app.enqueue(tasks["start"], 1)
    child = app.enqueue(tasks["gather"], None, depends_on=[parent])
    grandchild = app.enqueue(tasks["gather"], None, depends_on=[child])
    assert app.cancel(child) == "cancelled"
    assert status(db, grandchild) == CANCELLED
    assert status(db, parent) == QUEUED


async def test_deleting_a_parent_before_it_ended_counts_as_a_failure_and_edges_go_with_the_child(
    app: Conveyor, settings: Settings, db: Db
) -> None:
    tasks = declare(app)
    parent = app.enqueue(tasks["start"], 1)
    other = app.enqueue(tasks["start"], 2)
    child = app.enqueue(tasks["gather"], None, depends_on=[parent])
    runs = app.enqueue(tasks["gather"], None, depends_on=[parent, other], on_parent_failure="run")
    async with Admin(settings) as admin:
        await admin.delete(parent, "ops")
        assert status(db, child) == CANCELLED
        assert child_row(db, runs)[:2] == (WAITING, 1)
        await admin.delete(runs, "ops")
    assert job_edges(db, runs) == []
    assert job_edges(db, child) == [(parent, True)]


async def test_a_child_enqueued_while_its_parent_completes_counts_it_once(
    app: Conveyor, store: Store, settings: Settings, db: Db
) -> None:
    """The completion holds the parent's row: the child's insert waits for it, then reads
    the parent as completed, with its result."""
    tasks = declare(app)
    parent = add_job(db, QUEUE, task=tasks["start"].name, status=RUNNING, lease_token=1)
    schema = settings.database.schema_name
    async with store.transaction() as tx:
        landed = await tx.record_outcomes([Outcome(parent, 1, LOG_COMPLETED, 0.1, result="5")])
        assert landed == {parent}
        enqueue = asyncio.create_task(
            asyncio.to_thread(app.enqueue, tasks["gather"], None, depends_on=[parent])
        )
        await wait_until(lambda: lock_waiters(db, schema) > 0, message="the insert to wait")
        assert not enqueue.done()
    child = await enqueue
    assert child_row(db, child) == (QUEUED, 0, [{"id": str(parent), "result": 5}])
    assert job_edges(db, child) == [(parent, True)]


async def test_a_parent_completing_while_its_child_is_being_enqueued_releases_it(
    app: Conveyor, store: Store, settings: Settings, db: Db
) -> None:
    """The other order: the child's transaction holds the parent; the completion waits for
    its commit, and its trigger then finds the new edge."""
    tasks = declare(app)
    parent = add_job(db, QUEUE, task=tasks["start"].name, status=RUNNING, lease_token=1)
    schema = settings.database.schema_name
    async with await psycopg.AsyncConnection.connect(settings.database.url) as conn:
        child = await app.aenqueue(tasks["gather"], None, depends_on=[parent], connection=conn)
        completing = asyncio.create_task(
            store.record_outcomes([Outcome(parent, 1, LOG_COMPLETED, 0.1, result='"ok"')])
        )
        await wait_until(lambda: lock_waiters(db, schema) > 0, message="the outcome to wait")
        await conn.commit()
    assert await completing == {parent}
    assert child_row(db, child) == (QUEUED, 0, [{"id": str(parent), "result": "ok"}])


async def test_releasing_a_child_wakes_the_queuer(
    app: Conveyor, store: Store, settings: Settings, db: Db
) -> None:
    tasks = declare(app)
    parent = add_job(db, QUEUE, task=tasks["start"].name, status=RUNNING, lease_token=1)
    child = app.enqueue(tasks["gather"], None, depends_on=[parent])
    with psycopg.connect(settings.database.url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{settings.database.schema_name}_jobs"'.encode())
        await store.record_outcomes([Outcome(parent, 1, LOG_COMPLETED, 0.1)])
        woken = list(listener.notifies(timeout=10, stop_after=1))
    assert len(woken) == 1
    assert status(db, child) == QUEUED


def test_bad_dependencies_are_refused_and_nothing_is_written(app: Conveyor, db: Db) -> None:
    tasks = declare(app)
    parent = app.enqueue(tasks["start"], 1)
    before = status_counts(db)
    unknown = uuid7()  # a job id not (yet) enqueued: no cycle can ever be built
    with pytest.raises(EnqueueError, match=str(unknown)):
        app.enqueue(tasks["gather"], None, depends_on=[parent, unknown])
    with pytest.raises(EnqueueError, match=str(unknown)):
        app.chord([tasks["start"].s(1)], tasks["gather"].s(depends_on=[unknown]))
    with pytest.raises(EnqueueError, match="twice"):
        app.enqueue(tasks["gather"], None, depends_on=[parent, str(parent)])
    with pytest.raises(EnqueueError, match="not a job id"):
        app.enqueue(tasks["gather"], None, depends_on=["nope"])
    with pytest.raises(EnqueueError, match="list of job ids"):
        app.enqueue(tasks["gather"], None, depends_on=parent)  # type: ignore[arg-type]
    with pytest.raises(EnqueueError, match="on_parent_failure must be one of"):
        app.enqueue(tasks["gather"], None, depends_on=[parent], on_parent_failure="maybe")
    with pytest.raises(EnqueueError, match="only to a job with depends_on"):
        app.enqueue(tasks["gather"], None, on_parent_failure="run")
    with pytest.raises(EnqueueError, match="dedup"):
        app.enqueue(tasks["gather"], None, depends_on=[parent], dedup=Unique("k"))
    with pytest.raises(EnqueueError, match="at least one"):
        app.chain()
    with pytest.raises(EnqueueError, match="signature"):
        app.group([tasks["start"]])  # type: ignore[list-item]
    assert status_counts(db) == before
    assert db.execute(b"SELECT count(*) FROM job_dependencies").fetchone() == (0,)
    flagged = db.execute(b"SELECT count(*) FROM jobs WHERE has_dependents").fetchone()
    assert flagged == (0,)


def test_an_unknown_parent_inside_the_callers_transaction_writes_nothing(
    app: Conveyor, settings: Settings, db: Db
) -> None:
    tasks = declare(app)
    with psycopg.connect(settings.database.url) as conn:
        kept = app.enqueue(tasks["start"], 1, connection=conn)
        with pytest.raises(EnqueueError, match="nothing was enqueued"):
            app.enqueue(tasks["gather"], None, depends_on=[kept, uuid7()], connection=conn)
        conn.commit()  # the caller's transaction is still good: its other job commits
    assert status(db, kept) == QUEUED
    assert status_counts(db) == {QUEUED: 1}


async def test_sealed_fields_of_a_parents_result_open_for_the_child(
    settings: Settings, settings_factory: Any
) -> None:
    """A result's encrypted fields are sealed to the parent's id; the child's worker opens
    them with that id, and the row keeps them sealed."""
    sealed = settings_factory(
        **{"encryption.keys": [Fernet.generate_key().decode()], "encryption.fields": ["ssn"]}
    )
    app = Conveyor(sealed)

    @app.task(queue=QUEUE)
    def lookup(_: Any) -> dict[str, str]:
        return {"ssn": "078-05-1120", "name": "Ada"}

    @app.task(queue=QUEUE)
    def use(_: Any, ctx: JobContext) -> str:
        return f"{ctx.parent_result['name']} {ctx.parent_result['ssn'][-4:]}"

    system = Running(app)
    try:
        chain = app.chain(lookup.s(), use.s())
        system.queuer()
        system.worker([QUEUE])
        assert await app.await_job(chain.last, timeout=30) == "Ada 1120"
    finally:
        await system.stop()
        await app.aclose()
    with psycopg.connect(sealed.database.url) as conn:
        stored = conn.execute(
            f'SELECT parent_results::text FROM "{sealed.database.schema_name}".jobs'
            " WHERE id = %s".encode(),
            (chain.last,),
        ).fetchone()
    assert stored is not None and "078-05-1120" not in stored[0]
