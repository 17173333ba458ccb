"""Dedup modes under concurrent producers: each one a thread with its own connection and
transaction, released together by a barrier. A mode's promise is checked in the rows."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from conveyor import Debounce, EnqueueResult, Throttle, Unique
from conveyor.app import Conveyor
from conveyor.dedup import Dedup
from conveyor.tasks import Task
from conveyor.vocabulary import COMPLETED, DISPATCHED, QUEUED
from tests.dedup_helpers import age, jobs, noop_task, outcomes
from tests.factories import add_job

PRODUCERS = 20


@pytest.fixture
def noop(app: Conveyor) -> Task:
    return noop_task(app)


def wait_for_lock_wait(db: psycopg.Connection[Any], holder_pid: int) -> None:
    """Until some backend waits for a lock `holder_pid` holds."""
    deadline = time.monotonic() + 30
    blocked = b"SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
    while db.execute(blocked, (holder_pid,)).fetchone() != (1,):
        assert time.monotonic() < deadline, "the debounce never waited for the row lock"
        time.sleep(0.02)


def concurrently(
    app: Conveyor, task: Task, mode: Callable[[int], Dedup]
) -> tuple[list[EnqueueResult], list[int]]:
    """`PRODUCERS` enqueues of payload {"n": i} at once, each in its own transaction; the
    results, and the order in which the producers held the key (their lock is the key's
    until they commit)."""
    barrier = threading.Barrier(PRODUCERS)
    results: list[EnqueueResult | None] = [None] * PRODUCERS
    order: list[int] = []
    order_lock = threading.Lock()
    errors: list[BaseException] = []

    def produce(index: int) -> None:
        try:
            with psycopg.connect(app.settings.database.url) as conn:
                barrier.wait()
                result = app.enqueue_result(task, {"n": index}, dedup=mode(index), connection=conn)
                results[index] = result
                with order_lock:
                    order.append(index)
                conn.commit()
        except Exception as error:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    done = [result for result in results if result is not None]
    assert len(done) == PRODUCERS
    return done, order


def test_unique_concurrent_enqueues_write_one_job(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    results, _ = concurrently(app, noop, lambda i: Unique("report:7"))
    rows = jobs(db)
    assert len(rows) == 1
    assert outcomes(results) == {"enqueued": 1, "duplicate": PRODUCERS - 1}
    assert {result.job_id for result in results} == {rows[0][0]}


def test_debounce_concurrent_enqueues_keep_one_job_with_the_last_payload(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    results, order = concurrently(app, noop, lambda i: Debounce("reindex:9", delay=30))
    rows = jobs(db)
    assert len(rows) == 1
    assert outcomes(results) == {"enqueued": 1, "debounced": PRODUCERS - 1}
    assert rows[0][1] == {"n": order[-1]}
    assert results[order[0]].outcome == "enqueued"
    pushed = db.execute(b"SELECT run_at > now() + interval '25 seconds' FROM jobs").fetchone()
    assert pushed == (True,)


def test_debounce_loses_to_a_queuer_that_dispatches_the_job_first(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    holder = app.enqueue(noop, {"v": 1}, dedup=Debounce("k", delay=0))
    with psycopg.connect(app.settings.database.url) as dispatcher:
        schema = app.settings.database.schema_name
        dispatcher.execute(f'SET search_path TO "{schema}"'.encode())
        dispatcher.execute(b"UPDATE jobs SET status = %s WHERE id = %s", (DISPATCHED, holder))
        outcome: list[EnqueueResult] = []
        producer = threading.Thread(
            target=lambda: outcome.append(
                app.enqueue_result(noop, {"v": 2}, dedup=Debounce("k", delay=0))
            )
        )
        producer.start()
        # The debounce waits on the dispatcher's row lock, then sees the job dispatched.
        wait_for_lock_wait(db, dispatcher.info.backend_pid)
        dispatcher.commit()
    producer.join(timeout=30)
    assert len(outcome) == 1 and outcome[0].outcome == "enqueued"
    assert [row[1:] for row in jobs(db)] == [({"v": 1}, DISPATCHED), ({"v": 2}, QUEUED)]


def test_throttle_concurrent_enqueues_write_one_job_per_window(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    results, _ = concurrently(app, noop, lambda i: Throttle("webhook:acme", window=10))
    assert outcomes(results) == {"enqueued": 1, "throttled": PRODUCERS - 1}
    assert len({result.job_id for result in results}) == 1
    db.execute(b"UPDATE jobs SET status = %s", (COMPLETED,))
    assert app.enqueue_result(noop, {}, dedup=Throttle("webhook:acme", 10)).outcome == "throttled"
    age(db, 11)
    fresh = app.enqueue_result(noop, {}, dedup=Throttle("webhook:acme", window=10))
    assert fresh.outcome == "enqueued"
    assert len(jobs(db)) == 2


def test_concurrent_enqueues_after_the_period_write_one_new_job(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    old = add_job(db, status=COMPLETED, age=120, unique_key="digest:bob")
    results, _ = concurrently(app, noop, lambda i: Unique("digest:bob", period=60))
    assert outcomes(results) == {"enqueued": 1, "duplicate": PRODUCERS - 1}
    new = {result.job_id for result in results}
    assert len(new) == 1 and old not in new
    assert len(jobs(db)) == 2


def test_concurrent_batches_sharing_keys_in_any_order_neither_deadlock_nor_duplicate(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    keys = [f"k{n}" for n in range(10)]
    batches = 8
    barrier = threading.Barrier(batches)
    results: list[list[EnqueueResult]] = []
    errors: list[Exception] = []

    def produce(index: int) -> None:
        ordered = random.Random(index).sample(keys, len(keys))  # each batch its own order
        try:
            barrier.wait()
            modes: list[Dedup | None] = [Unique(key) for key in ordered]
            results.append(app.enqueue_many_results(noop, [{}] * len(keys), dedup=modes))
        except Exception as error:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == batches
    written = [result for batch in results for result in batch if result.written]
    assert len(written) == len(keys)
    rows = db.execute(b"SELECT unique_key, count(*) FROM jobs GROUP BY unique_key").fetchall()
    assert sorted(rows) == sorted((key, 1) for key in keys)


def test_a_producer_waits_for_the_transaction_holding_the_key_then_sees_its_job(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(app.settings.database.url) as holder:
        first = app.enqueue(noop, {"v": 1}, dedup=Unique("k"), connection=holder)
        seen: list[EnqueueResult] = []
        other = threading.Thread(
            target=lambda: seen.append(app.enqueue_result(noop, {"v": 2}, dedup=Unique("k")))
        )
        other.start()
        wait_for_lock_wait(db, holder.info.backend_pid)
        assert seen == []
        holder.commit()
    other.join(timeout=30)
    assert seen == [EnqueueResult(first, "duplicate")]
    assert len(jobs(db)) == 1
