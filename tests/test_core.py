"""Enqueue to completion through the real queuer, Redis lanes and workers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.jobs import COMPLETED
from conveyor.store import Store
from tests.conftest import Running, status_counts, wait_until


async def test_sync_and_async_handlers_complete(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    seen: list[tuple[str, Any]] = []
    lock = threading.Lock()

    @app.task(queue="email-sending")
    def send(payload: dict[str, Any]) -> None:
        with lock:
            seen.append(("sync", payload["n"]))

    @app.task(queue="email-sending")
    async def send_async(payload: dict[str, Any]) -> None:
        seen.append(("async", payload["n"]))

    first = app.enqueue(send, {"n": 1})
    second = await app.aenqueue(send_async, {"n": 2})
    running.queuer()
    running.worker(["email-sending"])

    await wait_until(lambda: len(seen) == 2, message="both jobs to run")
    await wait_until(lambda: status_counts(db).get(COMPLETED) == 2, message="completion")
    assert sorted(seen) == [("async", 2), ("sync", 1)]
    for job_id in (first, second):
        job = app.get_job(job_id)
        assert job.status == COMPLETED and job.attempt == 1
        assert job.started is not None and job.completed is not None
    logs = db.execute(b"SELECT status, attempt_number, worker_id FROM job_logs").fetchall()
    assert sorted(row[0] for row in logs) == ["completed", "completed"]
    assert all(row[1] == 1 and row[2] for row in logs)


async def test_a_job_without_a_payload_runs_with_none(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    seen: list[Any] = []

    @app.task(queue="email-sending")
    async def ping(payload: Any) -> None:
        seen.append(payload)

    app.enqueue(ping)  # no payload at all
    await app.aenqueue(ping, None)
    running.queuer()
    running.worker(["email-sending"])
    await wait_until(lambda: status_counts(db).get(COMPLETED) == 2, message="both ran")
    assert seen == [None, None]


async def test_delayed_job_does_not_run_early(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    ran: list[datetime] = []

    @app.task(queue="warmup:process")
    def warm(payload: Any) -> None:
        ran.append(datetime.now(UTC))

    job_id = app.enqueue(warm, {}, delay=timedelta(seconds=1.5))
    running.queuer()
    running.worker(["warmup:process"])
    await asyncio.sleep(0.8)
    assert app.get_job(job_id).status == "queued"
    await wait_until(lambda: app.get_job(job_id).status == COMPLETED, message="delayed job")
    row = db.execute(b"SELECT started >= run_at, run_at > created FROM jobs").fetchone()
    assert row == (True, True)


def test_transactional_enqueue_rolls_back(app: Conveyor, db: psycopg.Connection[Any]) -> None:
    @app.task(queue="q")
    def noop(payload: Any) -> None:
        return None

    with psycopg.connect(app.settings.database.url) as conn:
        app.enqueue(noop, {"a": 1}, connection=conn)
        conn.rollback()
        kept = app.enqueue(noop, {"a": 2}, connection=conn)
        # Not visible to anyone else before the caller commits.
        assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (0,)
        conn.commit()
    rows = db.execute(b"SELECT id, payload FROM jobs").fetchall()
    assert rows == [(kept, {"a": 2})]


def test_bulk_enqueue_writes_all_in_one_statement(
    app: Conveyor, db: psycopg.Connection[Any]
) -> None:
    @app.task(queue="analytics:daily-aggregate", priority=120)
    def aggregate(payload: Any) -> None:
        return None

    ids = app.enqueue_many(aggregate, [{"i": i} for i in range(5000)])
    assert len(set(ids)) == 5000
    rows = db.execute(b"SELECT count(*), min(priority), max(priority) FROM jobs").fetchone()
    assert rows == (5000, 120, 120)
    assert app.enqueue_many(aggregate, []) == []


def test_idempotency_key_returns_existing_job(app: Conveyor, db: psycopg.Connection[Any]) -> None:
    @app.task(queue="q")
    def noop(payload: Any) -> None:
        return None

    first = app.enqueue(noop, {"x": 1}, idempotency_key="order-42")
    again = app.enqueue(noop, {"x": 2}, idempotency_key="order-42")
    assert first == again
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (1,)


async def test_one_batch_mixing_keyed_and_keyless_jobs(
    app: Conveyor, settings: Settings, db: psycopg.Connection[Any]
) -> None:
    # insert_jobs sends keyed jobs through ON CONFLICT and keyless ones around it, in one
    # statement: the ids still come back in the caller's order, a taken key giving its job.
    @app.task(queue="q")
    def noop(payload: Any) -> None:
        return None

    taken = app.enqueue(noop, {}, idempotency_key="order-42")
    keys = [None, "order-42", "order-43", None]
    ids = [uuid.uuid4() for _ in keys]
    records = [
        {"id": str(job_id), "queue_name": "q", "task": noop.name, "priority": 100,
         "payload": {"n": n}, "max_attempts": 3, "idempotency_key": key}
        for n, (job_id, key) in enumerate(zip(ids, keys, strict=True))
    ]  # fmt: skip
    store = await Store.open(settings, "test", size=1)
    try:
        got = await store.insert_jobs(orjson.dumps(records).decode(), ids, keys)
    finally:
        await store.close()
    assert got == [ids[0], taken, ids[2], ids[3]]
    rows = db.execute(b"SELECT id, idempotency_key FROM jobs ORDER BY idempotency_key, id")
    assert sorted(rows.fetchall(), key=str) == sorted(
        [(taken, "order-42"), (ids[2], "order-43"), (ids[0], None), (ids[3], None)], key=str
    )


@pytest.mark.parametrize(
    ("lane_order", "expected"),
    [
        ("queue", ["a:high", "a:normal", "a:low", "b:high", "b:normal", "b:low"]),
        ("priority", ["a:high", "b:high", "a:normal", "b:normal", "a:low", "b:low"]),
    ],
)
async def test_worker_drains_lanes_in_configured_order(
    app: Conveyor, running: Running, lane_order: str, expected: list[str]
) -> None:
    order: list[str] = []

    @app.task(queue="a")
    def job(payload: dict[str, str]) -> None:
        order.append(payload["tag"])

    for queue in ("a", "b"):
        for lane, priority in (("low", 200), ("normal", 100), ("high", 10)):
            app.enqueue_many(job, [{"tag": f"{queue}:{lane}"}] * 3, queue=queue, priority=priority)
    queuer = running.queuer()
    # Let the whole backlog reach Redis first, so the worker faces all six lanes at once.
    await wait_until(lambda: queuer.counts["dispatched"] == 18, message="dispatch")
    running.worker(["a", "b"], concurrency=1, lane_order=lane_order)
    await wait_until(lambda: len(order) == 18, message="all jobs")
    collapsed = [tag for i, tag in enumerate(order) if i == 0 or order[i - 1] != tag]
    assert collapsed == expected
