"""Dedup modes: unique (for a period, while in states), debounce, throttle, keys on batches.

Concurrency is real: each producer is a thread with its own connection and transaction,
released together by a barrier. Periods are crossed by moving `created` back, not by
sleeping.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from conveyor import Debounce, EnqueueError, EnqueueResult, Throttle, Unique
from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.dedup import Dedup
from conveyor.tasks import Task
from conveyor.vocabulary import COMPLETED, DISPATCHED, QUEUED, RUNNING
from tests.factories import add_job

PRODUCERS = 20
LIVE = (QUEUED, DISPATCHED, RUNNING)


@pytest.fixture
def noop(app: Conveyor) -> Task:
    @app.task(queue="q")
    def noop(payload: Any) -> None:
        return None

    return noop


def jobs(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(b"SELECT id, payload, status FROM jobs ORDER BY created, id").fetchall()


def age(db: psycopg.Connection[Any], seconds: float) -> None:
    """Every job enqueued `seconds` earlier than it was."""
    db.execute(b"UPDATE jobs SET created = created - %s * interval '1 second'", (seconds,))


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


def outcomes(results: list[EnqueueResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts


def test_unique_concurrent_enqueues_write_one_job(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    results, _ = concurrently(app, noop, lambda i: Unique("report:7"))
    rows = jobs(db)
    assert len(rows) == 1
    assert outcomes(results) == {"enqueued": 1, "duplicate": PRODUCERS - 1}
    assert {result.job_id for result in results} == {rows[0][0]}


def test_unique_while_in_states_allows_a_new_job_once_the_holder_finished(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    mode = Unique("sync:42", states=LIVE)
    first = app.enqueue_result(noop, {"v": 1}, dedup=mode)
    assert first.outcome == "enqueued"
    for status in (DISPATCHED, RUNNING):
        db.execute(b"UPDATE jobs SET status = %s", (status,))
        again = app.enqueue_result(noop, {"v": 2}, dedup=mode)
        assert again == EnqueueResult(first.job_id, "duplicate")
    db.execute(b"UPDATE jobs SET status = %s", (COMPLETED,))
    after = app.enqueue_result(noop, {"v": 3}, dedup=mode)
    assert after.outcome == "enqueued" and after.job_id != first.job_id
    assert [row[1] for row in jobs(db)] == [{"v": 1}, {"v": 3}]


def test_unique_without_states_blocks_while_the_row_exists(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    first = app.enqueue(noop, {"v": 1}, dedup=Unique("once"))
    db.execute(b"UPDATE jobs SET status = %s", (COMPLETED,))
    assert app.enqueue(noop, {"v": 2}, dedup=Unique("once")) == first
    assert len(jobs(db)) == 1


def test_unique_for_a_period_allows_a_new_job_after_it(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    mode = Unique("digest:alice", period=60)
    first = app.enqueue_result(noop, {"v": 1}, dedup=mode)
    assert app.enqueue_result(noop, {"v": 2}, dedup=mode).outcome == "duplicate"
    age(db, 59)
    assert app.enqueue_result(noop, {"v": 3}, dedup=mode).job_id == first.job_id
    age(db, 2)
    later = app.enqueue_result(noop, {"v": 4}, dedup=mode)
    assert later.outcome == "enqueued" and later.job_id != first.job_id
    # The new job holds the key now: the period starts again from it.
    assert app.enqueue_result(noop, {"v": 5}, dedup=mode).job_id == later.job_id
    assert [row[1] for row in jobs(db)] == [{"v": 1}, {"v": 4}]


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


def test_debounce_pushes_the_run_time_and_replaces_the_payload(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    first = app.enqueue_result(noop, {"v": 1}, dedup=Debounce("k", delay=5))
    db.execute(b"UPDATE jobs SET run_at = now() - interval '1 hour'")
    again = app.enqueue_result(noop, {"v": 2}, dedup=Debounce("k", delay=120))
    assert again == EnqueueResult(first.job_id, "debounced")
    row = db.execute(
        b"SELECT payload, run_at > now() + interval '100 seconds', attempt FROM jobs"
    ).fetchone()
    assert row == ({"v": 2}, True, 0)


@pytest.mark.parametrize(
    ("status", "attempt"), [(DISPATCHED, 0), (RUNNING, 1), (COMPLETED, 1), (QUEUED, 1)]
)
def test_debounce_writes_a_new_job_once_the_waiting_one_left_or_started(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any], status: str, attempt: int
) -> None:
    holder = add_job(db, status=status, attempt=attempt, payload={"v": 0}, unique_key="k")
    result = app.enqueue_result(noop, {"v": 1}, dedup=Debounce("k", delay=0))
    assert result.outcome == "enqueued" and result.job_id != holder
    assert db.execute(b"SELECT payload FROM jobs WHERE id = %s", (holder,)).fetchone() == (
        {"v": 0},
    )


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


def test_enqueue_many_takes_keys_within_the_batch_and_against_existing_jobs(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    existing = app.enqueue(noop, {"v": "old-b"}, dedup=Unique("b"))
    modes: list[Dedup | None] = [
        Unique("a"),
        Unique("a"),
        Unique("b"),
        None,
        Throttle("c", 60),
        Debounce("d", 0),
        Debounce("d", 0),
        None,
    ]
    payloads = [{"v": i} for i in range(len(modes))]
    results = app.enqueue_many_results(noop, payloads, dedup=modes)
    assert [result.outcome for result in results] == [
        "enqueued",
        "duplicate",
        "duplicate",
        "enqueued",
        "enqueued",
        "debounced",
        "enqueued",
        "enqueued",
    ]
    assert results[1].job_id == results[0].job_id
    assert results[2].job_id == existing
    assert results[5].job_id == results[6].job_id
    assert len({result.job_id for result in results}) == 6
    stored = {row[1]["v"] for row in jobs(db)}
    assert stored == {"old-b", 0, 3, 4, 6, 7}  # Debounce kept the batch's last payload
    # The same batch again: everything keyed is absorbed, the keyless ones are new.
    again = app.enqueue_many(noop, payloads, dedup=modes)
    assert again[:3] == [results[0].job_id] * 2 + [existing]
    assert len(jobs(db)) == 8


async def test_async_enqueues_of_one_key_write_one_job(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    results = await asyncio.gather(
        *(app.aenqueue_result(noop, {"n": i}, dedup=Unique("a")) for i in range(8))
    )
    many = await app.aenqueue_many_results(noop, [{}, {}], dedup=[Unique("a"), Unique("z")])
    assert await app.aenqueue(noop, {}, dedup=Unique("a")) == results[0].job_id
    await app.aclose()
    assert outcomes(list(results)) == {"enqueued": 1, "duplicate": 7}
    assert [result.outcome for result in many] == ["duplicate", "enqueued"]
    assert len(jobs(db)) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dedup": Unique("")}, "Unique.key"),
        ({"dedup": Unique("k", period=-1)}, "Unique.period"),
        ({"dedup": Unique("k", period=0)}, "Unique.period"),
        ({"dedup": Unique("k", states=("finished",))}, "Unique.states"),
        ({"dedup": Unique("k", states="queued")}, "Unique.states"),
        ({"dedup": Throttle("k", window=0)}, "Throttle.window"),
        ({"dedup": Debounce("k", delay="soon")}, "Debounce.delay"),  # type: ignore[arg-type]
        ({"dedup": Debounce("k", delay=1), "delay": 5}, "Debounce sets the run time"),
        ({"dedup": Unique("k"), "idempotency_key": "x"}, "idempotency_key or dedup"),
        ({"dedup": "k"}, "dedup must be Unique, Debounce or Throttle"),
    ],
)
def test_bad_dedup_is_refused_naming_the_field_and_writes_nothing(
    app: Conveyor,
    noop: Task,
    db: psycopg.Connection[Any],
    options: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(EnqueueError, match=message):
        app.enqueue(noop, {}, **options)
    assert jobs(db) == []


def test_bad_dedup_list_for_enqueue_many_is_refused(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(EnqueueError, match="one per job"):
        app.enqueue_many(noop, [{}, {}], dedup=[Unique("a")])
    with pytest.raises(EnqueueError, match="must be a list"):
        app.enqueue_many(noop, [{}], dedup=Unique("a"))  # type: ignore[arg-type]
    assert jobs(db) == []


def test_plain_enqueue_and_idempotency_keys_are_unchanged(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    first = app.enqueue(noop, {"x": 1}, idempotency_key="order-42")
    assert app.enqueue(noop, {"x": 2}, idempotency_key="order-42") == first
    app.enqueue_many(noop, [{}, {}])
    keys = db.execute(b"SELECT count(*) FROM jobs WHERE unique_key IS NOT NULL").fetchone()
    assert keys == (0,)
    assert len(jobs(db)) == 3


def test_dedup_inside_a_repeatable_read_transaction_is_refused(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(app.settings.database.url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(EnqueueError, match="READ COMMITTED"):
            app.enqueue(noop, {}, dedup=Unique("k"), connection=conn)
        conn.rollback()
    assert jobs(db) == []


async def test_the_key_is_shown_on_the_job(
    app: Conveyor, noop: Task, settings: Settings, db: psycopg.Connection[Any]
) -> None:
    job_id = app.enqueue(noop, {}, dedup=Throttle("webhook:acme", window=10))
    assert app.get_job(job_id).unique_key == "webhook:acme"
    async with Admin(settings) as admin:
        assert (await admin.job_detail(job_id)).unique_key == "webhook:acme"


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
