"""Global limits at the store level: the limited dispatch on fabricated rows (budgets,
key patterns, a key at its limit blocking no other), starts recorded by the claim, and
slots released by completion, failure, rescue and cancel (one run_once() each)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.errors import EnqueueError
from conveyor.limited_dispatch import LimitedDispatch
from conveyor.limits import Limit, Rate
from conveyor.maintenance import Rescuer
from conveyor.store import Store
from conveyor.store.work import Outcome
from conveyor.vocabulary import (
    DISPATCHED,
    LIMIT_FROM_ADMIN,
    LIMIT_FROM_CODE,
    LOG_COMPLETED,
    LOG_FAILED,
    RUNNING,
)
from tests.conftest import wait_until
from tests.factories import add_job, add_worker

Db = psycopg.Connection[Any]


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


def limited_job(db: Db, key: str | None, *, task: str = "t", queue: str = "q", **cols: Any) -> UUID:
    return add_job(db, queue, task=task, limit_key=key, limited=True, payload={}, **cols)


def statuses(db: Db) -> Counter[tuple[str | None, str]]:
    rows = db.execute(b"SELECT limit_key, status FROM jobs").fetchall()
    return Counter((key, status) for key, status in rows)


async def dispatch(settings: Settings, store: Store) -> list[UUID]:
    limited = LimitedDispatch(settings, store)
    return [job.id for job in await limited.dispatch()]


async def test_concurrency_per_key_and_patterns(settings: Settings, store: Store, db: Db) -> None:
    await store.write_limits(
        [
            Limit("key:a.com", None, 2),
            Limit("key:*.gmail.com", None, 1),
            Limit("key:*", None, 3),
        ],
        LIMIT_FROM_ADMIN,
    )
    for key in ["a.com"] * 5 + ["x.gmail.com"] * 3 + ["y.gmail.com"] * 3 + ["other"] * 5:
        limited_job(db, key)
    limited_job(db, "a.com", status=RUNNING)  # already holds one of a.com's two slots

    moved = await dispatch(settings, store)

    counts = statuses(db)
    assert counts[("a.com", DISPATCHED)] == 1
    assert counts[("x.gmail.com", DISPATCHED)] == 1  # each matching key has its own slot
    assert counts[("y.gmail.com", DISPATCHED)] == 1
    assert counts[("other", DISPATCHED)] == 3  # the default: "*"
    assert len(moved) == 6
    # Nothing more fits until a slot is released.
    assert await dispatch(settings, store) == []


async def test_a_full_key_does_not_block_other_keys(
    settings: Settings, store: Store, db: Db
) -> None:
    await store.write_limits([Limit("key:*", None, 1)], LIMIT_FROM_ADMIN)
    # "busy" holds its slot and has more urgent jobs than anyone; 1,000 other keys wait.
    limited_job(db, "busy", status=RUNNING)
    for _ in range(20):
        limited_job(db, "busy", priority=0)
    db.execute(
        b"INSERT INTO jobs (id, queue_name, task, payload, limit_key, limited)"
        b" SELECT gen_random_uuid(), 'q', 't', '{}', 'k' || n, true"
        b" FROM generate_series(1, 1000) AS n"
    )

    moved = await dispatch(settings, store)

    counts = statuses(db)
    assert counts[("busy", DISPATCHED)] == 0
    assert len(moved) == 500  # queuer.batch_size: one job of each of 500 keys
    dispatched_keys = db.execute(
        b"SELECT count(DISTINCT limit_key) FROM jobs WHERE status = 'dispatched'"
    ).fetchone()
    assert dispatched_keys == (500,)


async def test_rate_counts_dispatched_and_started(settings: Settings, store: Store, db: Db) -> None:
    await store.write_limits([Limit("queue:q", Rate(3, 60.0), None)], LIMIT_FROM_ADMIN)
    for _ in range(10):
        add_job(db, "q", task="t", payload={})  # plain jobs of a limited queue

    first = await dispatch(settings, store)
    assert len(first) == 3
    rate_scopes = db.execute(b"SELECT DISTINCT rate_scopes FROM jobs WHERE status = 'dispatched'")
    assert rate_scopes.fetchall() == [(["queue:q"],)]
    # A claim moves them from dispatched to started in one statement: still 3 in the window.
    add_worker(db, "w1", ["q"])
    claimed = await store.claim_jobs([str(i) for i in first], "w1", 30.0)
    assert len(claimed) == 3
    starts = db.execute(b"SELECT scope, sum(starts) FROM flow_starts GROUP BY scope").fetchall()
    assert starts == [("queue:q", 3)]
    assert await dispatch(settings, store) == []
    # Finishing does not free a rate: the starts stay in the window.
    await store.record_outcomes([Outcome(job.id, job.token, LOG_COMPLETED, 0.1) for job in claimed])
    limited = LimitedDispatch(settings, store)
    assert await limited.dispatch() == []
    assert limited.next_wake is not None and 0 < limited.next_wake <= 60.1
    # The window passes (the ledger's buckets are moved back an hour): 3 more.
    db.execute(b"UPDATE flow_starts SET bucket = bucket - interval '1 hour'")
    assert len(await dispatch(settings, store)) == 3


async def test_plain_dispatch_leaves_limited_work_alone(
    settings: Settings, store: Store, db: Db
) -> None:
    await store.write_limits([Limit("queue:limited", None, 1)], LIMIT_FROM_ADMIN)
    add_job(db, "limited", payload={})
    add_job(db, "limited", payload={})
    limited_job(db, "k", queue="plain")
    plain = add_job(db, "plain", payload={})

    dispatched = await store.dispatch_ready(100, 100)

    assert [job.id for job in dispatched] == [plain]
    assert not await store.has_backlog()  # limited work waiting is no backlog
    assert len(await dispatch(settings, store)) == 2  # one of "limited", and the keyed job


async def test_slots_come_back_on_complete_fail_rescue_and_cancel(
    settings: Settings, store: Store, db: Db, app: Conveyor
) -> None:
    await store.write_limits([Limit("key:k", None, 1)], LIMIT_FROM_ADMIN)
    add_worker(db, "w1", ["q"])
    for _ in range(5):
        limited_job(db, "k")

    async def run_one() -> Any:
        moved = await dispatch(settings, store)
        assert len(moved) == 1
        assert await dispatch(settings, store) == []  # the one slot is taken
        claimed = await store.claim_jobs([str(i) for i in moved], "w1", 30.0)
        assert len(claimed) == 1
        return claimed[0]

    job = await run_one()
    await store.record_outcomes([Outcome(job.id, job.token, LOG_COMPLETED, 0.1)])
    job = await run_one()
    failed = Outcome(job.id, job.token, LOG_FAILED, 0.1, error="boom", retry_in=3600.0)
    await store.record_outcomes([failed])
    job = await run_one()
    db.execute(
        b"UPDATE jobs SET lease_expires_at = now() - interval '1 hour' WHERE id = %s", (job.id,)
    )
    assert (await Rescuer(store, settings).run_once()).requeued == [job.id]
    moved = await dispatch(settings, store)
    assert len(moved) == 1
    assert app.cancel(moved[0]) == "cancelled"
    assert len(await dispatch(settings, store)) == 1


async def test_enqueue_with_a_key_and_a_limited_task(
    settings: Settings, store: Store, db: Db, app: Conveyor
) -> None:
    @app.task(queue="q", concurrency_limit=2)
    def limited(payload: Any) -> None: ...

    @app.task(queue="q")
    def plain(payload: Any) -> None: ...

    before = app.enqueue(limited, {})  # enqueued before the limit reaches PostgreSQL
    assert app.sync_limits() == ["task:" + limited.name]
    app.enqueue(limited, {})
    app.enqueue(plain, {}, limit_key="customer-7")
    app.enqueue(plain, {})
    rows = db.execute(b"SELECT task, limit_key, limited FROM jobs ORDER BY id").fetchall()
    assert rows == [
        (limited.name, None, True),
        (limited.name, None, True),
        (plain.name, "customer-7", True),
        (plain.name, None, False),
    ]
    assert db.execute(b"SELECT limited FROM jobs WHERE id = %s", (before,)).fetchone() == (True,)
    sources = db.execute(b"SELECT scope, source FROM flow_limits").fetchall()
    assert sources == [("task:" + limited.name, LIMIT_FROM_CODE)]
    moved = await dispatch(settings, store)
    assert len(moved) == 3  # both limited-task jobs (limit 2) and the keyed one
    with pytest.raises(EnqueueError, match="limit_key"):
        app.enqueue(plain, {}, limit_key="bad\nkey")
    with pytest.raises(EnqueueError, match="limit_key"):
        app.enqueue(plain, {}, limit_key="x" * 201)
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (4,)


async def test_code_does_not_overwrite_an_operator_and_config_is_synced(
    settings_factory: Any, db: Db
) -> None:
    settings = settings_factory(
        **{
            "queues.mail.rate_limit": "10/s",
            "limits.keys": {"a.com": {"concurrency": 2}},
            "limits.default_key": {"rate": "5/m"},
        }
    )
    from conveyor.store.migrate import migrate

    migrate(settings.database.url, settings.database.schema_name)
    store = await Store.open(settings, "test", 2)
    try:
        await LimitedDispatch(settings, store).sync_config()
        rows = {row.scope: row for row in await store.flow_limits()}
        assert set(rows) == {"queue:mail", "key:a.com", "key:*"}
        assert rows["key:*"].rate_count == 5 and rows["key:*"].rate_period_seconds == 60.0
        await store.write_limits([Limit("queue:mail", Rate(1, 1.0), None)], LIMIT_FROM_ADMIN)
        # A queuer starting again with the file does not undo the operator's change.
        await LimitedDispatch(settings, store).sync_config()
        rows = {row.scope: row for row in await store.flow_limits()}
        assert (rows["queue:mail"].rate_count, rows["queue:mail"].source) == (1, LIMIT_FROM_ADMIN)
        # A file that no longer names a key drops its row.
        fewer = settings_factory(**{"queues.mail.rate_limit": "10/s"})
        await LimitedDispatch(fewer, store).sync_config()
        assert {row.scope for row in await store.flow_limits()} == {"queue:mail"}
    finally:
        await store.close()


async def test_postgres_only_claims_leave_limited_work_alone(
    settings: Settings, store: Store, db: Db
) -> None:
    await store.write_limits([Limit("queue:limited", None, 5)], LIMIT_FROM_ADMIN)
    add_worker(db, "w1", ["q", "limited"])
    limited_job(db, "k", queue="q")
    limited_job(db, "k", queue="q", status=DISPATCHED, rate_scopes=["key:k"])
    add_job(db, "q", status=DISPATCHED, payload={}, rate_scopes=["queue:q"])
    add_job(db, "limited", payload={})
    plain = add_job(db, "q", payload={})

    claimed = await store.claim_ready_direct(["q", "limited"], 10, "w1", 30.0)

    assert [job.id for job in claimed] == [plain]


async def test_a_new_task_limit_reaches_a_job_whose_enqueue_is_still_open(
    settings: Settings, db: Db, app: Conveyor
) -> None:
    @app.task(queue="q", concurrency_limit=1)
    def limited(payload: Any) -> None: ...

    flow_limits = f'"{settings.database.schema_name}".flow_limits'
    with psycopg.connect(settings.database.url) as open_enqueue:
        job = app.enqueue(limited, {}, connection=open_enqueue)  # not committed yet
        writer = asyncio.get_running_loop().run_in_executor(None, app.sync_limits)

        def waiting_for_the_lock() -> bool:
            row = db.execute(
                b"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                (flow_limits,),
            ).fetchone()
            return bool(row and row[0])

        await wait_until(waiting_for_the_lock, message="the limit's write to wait for the enqueue")
        open_enqueue.commit()
        assert await writer == [f"task:{limited.name}"]
    row = db.execute(b"SELECT limited FROM jobs WHERE id = %s", (job,)).fetchone()
    assert row == (True,)  # the plain dispatch can never take it
