"""Dedup modes: unique (for a period, while in states), debounce, throttle, keys on batches.

Periods are crossed by moving `created` back, not by sleeping; the concurrent producers
are in test_dedup_concurrency.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY

from conveyor import Debounce, EnqueueError, EnqueueResult, Throttle, Unique
from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.dedup import Dedup
from conveyor.store.migrate import migrate
from conveyor.tasks import Task
from conveyor.vocabulary import COMPLETED, DISPATCHED, QUEUED, RUNNING
from tests.dedup_helpers import age, jobs, noop_task, outcomes
from tests.factories import add_job

LIVE = (QUEUED, DISPATCHED, RUNNING)


@pytest.fixture
def noop(app: Conveyor) -> Task:
    return noop_task(app)


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


def test_a_rolled_back_enqueue_leaves_the_key_free(
    app: Conveyor, noop: Task, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(app.settings.database.url) as conn:
        app.enqueue(noop, {"v": 1}, dedup=Unique("k"), connection=conn)
        conn.rollback()
    assert app.enqueue_result(noop, {"v": 2}, dedup=Unique("k")).outcome == "enqueued"
    assert noop.enqueue({"v": 3}, dedup=Unique("k")) == jobs(db)[0][0]  # the task shortcut
    assert [row[1] for row in jobs(db)] == [{"v": 2}]


def test_debounce_seals_an_encrypted_payload_to_the_job_it_replaces(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(
        **{"encryption.keys": [Fernet.generate_key().decode()], "encryption.fields": ["card"]}
    )
    migrate(settings.database.url, settings.database.schema_name)
    app = Conveyor(settings)
    noop = noop_task(app)
    try:
        first = app.enqueue(noop, {"card": "1111", "n": 1}, dedup=Debounce("k", delay=60))
        again = app.enqueue_result(noop, {"card": "2222", "n": 2}, dedup=Debounce("k", 60))
        assert again == EnqueueResult(first, "debounced")
        db.execute(b"UPDATE jobs SET status = %s", (DISPATCHED,))
        fresh = app.enqueue_result(noop, {"card": "3333", "n": 3}, dedup=Debounce("k", 60))
        assert fresh.outcome == "enqueued"
        stored = {row[0]: row[1] for row in jobs(db)}
        assert "2222" not in str(stored[first]) and "3333" not in str(stored[fresh.job_id])
        assert app.cipher.decrypt(stored[first], first) == {"card": "2222", "n": 2}
        assert app.cipher.decrypt(stored[fresh.job_id], fresh.job_id) == {"card": "3333", "n": 3}
    finally:
        app.close()


def test_only_written_jobs_are_counted_as_enqueued(app: Conveyor, noop: Task) -> None:
    labels = {"queue": "q", "task": noop.name}

    def enqueued() -> float:
        return REGISTRY.get_sample_value("jobs_enqueued_total", labels) or 0.0

    before = enqueued()
    app.enqueue_many(noop, [{}, {}, {}], dedup=[Unique("a"), Unique("a"), None])
    app.enqueue(noop, {}, dedup=Throttle("a", 60))
    assert enqueued() - before == 2
