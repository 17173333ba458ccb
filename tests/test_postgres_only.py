"""Postgres-only mode: with no Redis, workers claim straight from PostgreSQL, and go back
to the lanes when Redis answers again.

The statement on fabricated rows first (order, filters, limit, fencing, concurrency), then
an in-process worker switching modes, then real processes losing their Redis mid-run.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.store import Store
from conveyor.store.migrate import migrate
from conveyor.vocabulary import COMPLETED, DISPATCHED, RUNNING
from conveyor.web.app import create_app
from tests.apps import recording
from tests.conftest import Running, wait_until
from tests.factories import add_job, add_jobs, add_queue
from tests.processes import (
    Processes,
    RedisServer,
    create_recording_tables,
    free_port,
    queue_check,
    terminal_snapshot,
)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", size=4)
    yield opened
    await opened.close()


def job_row(db: psycopg.Connection[Any], job_id: UUID) -> tuple[Any, ...] | None:
    return db.execute(
        b"SELECT status, attempt, lease_token, worker_id, dispatched_at IS NULL,"
        b" lease_expires_at > now(), started IS NOT NULL FROM jobs WHERE id = %s",
        (job_id,),
    ).fetchone()


# -- the statement ---------------------------------------------------------------------------


async def test_direct_claims_take_the_most_urgent_first_across_queues(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    low = add_job(db, "a", priority=200)
    urgent = add_job(db, "b", priority=5)
    normal_old = add_job(db, "a", priority=100, age=60)
    normal_new = add_job(db, "b", priority=100)
    taken = []
    for _ in range(4):
        (job,) = await store.claim_ready_direct(["a", "b"], 1, "w", 30)
        taken.append(job.id)
    assert taken == [urgent, normal_old, normal_new, low]
    assert await store.claim_ready_direct(["a", "b"], 1, "w", 30) == []


async def test_direct_claims_skip_what_is_not_ready_or_not_ours(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    ready = add_job(db, "a")
    buffered = add_job(db, "a", status=DISPATCHED, priority=150)
    add_job(db, "a", run_in=3600)  # scheduled for later
    add_queue(db, "paused", active=False)
    add_job(db, "paused")
    add_job(db, "paused", status=DISPATCHED)
    add_job(db, "other")  # a queue this worker does not serve
    add_job(db, "a", status=RUNNING, worker="w-old")
    add_job(db, "a", status=COMPLETED)
    jobs = await store.claim_ready_direct(["a", "paused"], 10, "w", 30)
    assert sorted(job.id for job in jobs) == sorted([ready, buffered])
    assert await store.claim_ready_direct(["a", "paused"], 10, "w", 30) == []
    assert await store.claim_ready_direct([], 10, "w", 30) == []
    assert await store.claim_ready_direct(["a"], 0, "w", 30) == []


async def test_a_direct_claim_is_fenced_like_any_claim(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    queued = add_job(db, "a", attempt=1, lease_token=3, max_attempts=5, payload={"k": "v"})
    dispatched = add_job(db, "a", status=DISPATCHED, lease_token=7, priority=150)
    jobs = {job.id: job for job in await store.claim_ready_direct(["a"], 5, "w-direct", 30)}
    assert set(jobs) == {queued, dispatched}
    first = jobs[queued]
    assert (first.queue, first.task, first.payload) == ("a", "t", {"k": "v"})
    assert (first.attempt, first.max_attempts, first.token) == (2, 5, 4)
    assert (jobs[dispatched].attempt, jobs[dispatched].token) == (1, 8)
    for job_id, attempt, token in ((queued, 2, 4), (dispatched, 1, 8)):
        assert job_row(db, job_id) == (RUNNING, attempt, token, "w-direct", True, True, True)
    # The id of the dispatched job may still sit in a lane: a later pop cannot claim it.
    assert await store.claim_jobs([str(dispatched)], "w-lanes", 30) == []


async def test_the_limit_holds_and_nothing_is_claimed_twice(
    store: Store, db: psycopg.Connection[Any]
) -> None:
    add_jobs(db, "a", 150)
    add_jobs(db, "b", 150)
    some = b"SELECT id FROM jobs ORDER BY id LIMIT 60"  # part of the buffer of a lost Redis
    db.execute(b"UPDATE jobs SET status = %s WHERE id IN (" + some + b")", (DISPATCHED,))
    first = await store.claim_ready_direct(["a", "b"], 7, "w", 30)
    assert len(first) == 7
    seen = [job.id for job in first]
    while True:
        # Four claimers at once, on four connections, until nothing is left.
        rounds = await asyncio.gather(
            *(store.claim_ready_direct(["a", "b"], 9, f"w{n}", 30) for n in range(4))
        )
        claimed = [job.id for jobs in rounds for job in jobs]
        assert all(len(jobs) <= 9 for jobs in rounds)
        if not claimed:
            break
        seen.extend(claimed)
    assert len(seen) == 300, "every job claimed"
    assert len(set(seen)) == len(seen), "no job claimed twice"
    counts = db.execute(b"SELECT status, count(*), max(lease_token) FROM jobs GROUP BY status")
    assert counts.fetchall() == [(RUNNING, 300, 1)]


async def test_rows_another_claimer_holds_are_skipped(
    settings: Settings, store: Store, db: psycopg.Connection[Any]
) -> None:
    held = add_job(db, "a", priority=1)
    free = add_job(db, "a", priority=2)
    with psycopg.connect(settings.database.url) as other:
        other.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        other.execute(b"SELECT id FROM jobs WHERE id = %s FOR UPDATE", (held,))
        jobs = await asyncio.wait_for(store.claim_ready_direct(["a"], 5, "w", 30), 10)
        assert [job.id for job in jobs] == [free]
        other.rollback()
    (job,) = await store.claim_ready_direct(["a"], 5, "w", 30)
    assert job.id == held


# -- what an operator sees ------------------------------------------------------------------


async def test_health_and_the_dashboard_name_the_mode(
    settings: Settings, settings_factory: Callable[..., Settings], db: psycopg.Connection[Any]
) -> None:
    add_job(db, "a")
    token = "viewer-token-0123456789"
    tokens = [{"name": "viewer-bot", "role": "viewer", "token": token}]
    seen = {}
    for mode, redis_url in (
        ("normal", settings.redis.url),
        ("postgres-only", f"redis://127.0.0.1:{free_port()}/0"),
    ):
        web = create_app(settings_factory(**{"redis.url": redis_url, "web.tokens": tokens}))
        transport = httpx.ASGITransport(app=web)
        async with (
            web.router.lifespan_context(web),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            headers = {"Authorization": f"Bearer {token}"}
            health = (await client.get("/api/health", headers=headers)).json()
            overview = await client.get("/fragments/queues", headers=headers)
        assert overview.status_code == 200
        seen[mode] = (health["mode"], health["mode_reason"], overview.text)
    assert seen["normal"][:2] == ("normal", None)
    assert "mode: postgres-only" not in seen["normal"][2]
    mode, reason, html = seen["postgres-only"]
    assert mode == "postgres-only" and reason.startswith("Redis unreachable: ")
    assert "mode: postgres-only" in html and "Redis unreachable" in html


# -- a worker switching modes, in process ------------------------------------------------------


def sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


async def test_a_worker_without_redis_claims_from_postgres_then_returns_to_the_lanes(
    settings: Settings, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)  # not started yet: its port refuses connections
    # A poll far longer than any wait below: only a NOTIFY or Redis answering can wake an
    # idle worker in time.
    no_redis = settings_factory(
        **{
            "redis.url": server.url,
            "worker.postgres_only_after": 0.3,
            "worker.postgres_only_poll": 3600,
        }
    )
    app = Conveyor(no_redis)

    @app.task(name="noop", queue="work")
    def noop(payload: Any) -> None:
        return None

    seconds_before = sample("postgres_only_seconds_total")
    system = Running(app)
    try:
        queuer = system.queuer()
        worker = system.worker(["work"], concurrency=4)
        ids = app.enqueue_many(noop, [{"n": n} for n in range(40)])

        def all_completed(job_ids: list[UUID]) -> bool:
            return all(app.get_job(job_id).status == COMPLETED for job_id in job_ids)

        await wait_until(lambda: all_completed(ids), timeout=60, message="jobs without Redis")
        assert worker.mode == "postgres-only"
        assert sample("postgres_only_mode") == 1
        late = app.enqueue_many(noop, [{"n": n} for n in range(5)])  # to an idle worker
        await wait_until(lambda: all_completed(late), message="woken by the insert's NOTIFY")
        assert worker.counts["claimed_directly"] == 45
        assert worker.ready, "a worker claiming from PostgreSQL is doing its job"
        assert (queuer.mode, queuer.ready, queuer.counts["dispatched"]) == (
            "postgres-only",
            True,
            0,
        )
        # Rescue runs without Redis: the leader lock comes with the LISTEN session.
        await wait_until(lambda: queuer.is_leader, message="the queuer to lead")

        server.start()
        await wait_until(lambda: worker.mode == "normal", timeout=30, message="back to lanes")
        await wait_until(lambda: queuer.mode == "normal", timeout=30, message="dispatch again")
        assert sample("postgres_only_mode") == 0
        assert sample("postgres_only_seconds_total") > seconds_before
        more = app.enqueue_many(noop, [{"n": n} for n in range(20)])
        await wait_until(lambda: all_completed(more), timeout=60, message="jobs via Redis")
        assert worker.counts["claimed_directly"] == 45, "the new jobs came through the lanes"
        assert queuer.counts["dispatched"] >= 20
    finally:
        await system.stop()
        await app.aclose()
        server.stop()


# -- real processes losing their Redis ------------------------------------------------------


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    status, body = probe(port, "/readyz")
    return status, json.loads(body) if body else {}


def scrape(port: int) -> dict[str, float]:
    """Samples by name, summed over labels ("jobs_dispatched_total", ...)."""
    status, text = probe(port, "/metrics")
    assert status == 200
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            totals[item.name] = totals.get(item.name, 0.0) + item.value
    return totals


def finished(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.fault
async def test_jobs_run_from_postgres_while_redis_is_down_and_via_redis_after(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    private_redis: RedisServer,
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    own = settings_factory(**{"redis.url": private_redis.url})
    migrate(own.database.url, own.database.schema_name)
    create_recording_tables(own)
    app = Conveyor(own)
    app.tasks.update(recording.app.tasks)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(own, logs)
    queuer_port, worker_port = free_port(), free_port()
    try:
        ids = app.enqueue_many("job", [{"sleep": 0.002} for _ in range(2000)])
        procs.queuer("--health-port", str(queuer_port))
        procs.conveyor(
            "worker",
            *("--app", "tests.apps.recording:app", "--queues", "work"),
            *("--processes", "2", "--concurrency", "8", "--health-port", str(worker_port)),
            name="worker",
            WORKER_POSTGRES_ONLY_AFTER="1s",
        )
        await wait_until(lambda: finished(db) >= 300, timeout=120, message="progress via Redis")
        private_redis.stop()  # SIGKILL, mid-run
        ids += app.enqueue_many("job", [{"sleep": 0.002} for _ in range(300)])

        def worker_in_mode() -> bool:
            return scrape(worker_port).get("postgres_only_mode") == 1

        await wait_until(worker_in_mode, timeout=60, message="postgres-only mode")
        answers: list[int] = []

        def ready_without_redis(port: int) -> bool:
            status, body = readyz(port)
            answers.append(status)
            if status != 200:
                # The shared PostgreSQL may refuse a probe's connection now and then
                # (too many clients); Redis must never be the reason.
                assert not any("Redis" in why for why in body.get("failing", [])), body
                return False
            assert body["mode"] == "postgres-only", body
            assert body["reason"] == "Redis unreachable", body  # no address: see probes
            return True

        await wait_until(lambda: ready_without_redis(queuer_port), message="queuer ready")

        def drained_while_ready() -> bool:
            ready_without_redis(worker_port)
            return finished(db) == len(ids)

        await wait_until(drained_while_ready, timeout=240, interval=0.5, message="every job")
        assert answers.count(200) >= answers.count(503) + 1, answers
        queue_check(db, ids)
        dispatched_before = scrape(queuer_port).get("jobs_dispatched_total", 0.0)

        private_redis.start()  # the same port, empty

        def back_on_redis() -> bool:
            return (
                scrape(worker_port).get("postgres_only_mode") == 0
                and readyz(queuer_port)[1].get("mode") == "normal"
            )

        await wait_until(back_on_redis, timeout=60, message="workers back on the lanes")
        later = app.enqueue_many("job", [{"sleep": 0.002} for _ in range(500)])
        ids += later
        await wait_until(lambda: finished(db) == len(ids), timeout=120, message="later jobs")
        metrics = scrape(queuer_port)
        assert metrics["jobs_dispatched_total"] >= dispatched_before + len(later), "via Redis"
        assert metrics["postgres_only_seconds_total"] > 0
        assert scrape(worker_port)["postgres_only_seconds_total"] > 0

        def ready_normal() -> bool:
            status, body = readyz(worker_port)
            return (status, body.get("failing"), body.get("mode")) == (200, [], "normal")

        await wait_until(ready_normal, message="worker ready, normal")

        counts = queue_check(db, ids)
        assert counts == {"completed": len(ids)}
        # At-least-once, no more: a job ran twice only if a rescue gave it back.
        reruns = db.execute(
            b"SELECT e.job_id FROM executions e GROUP BY e.job_id HAVING count(*) > 1"
            b" EXCEPT SELECT l.job_id FROM job_logs l WHERE l.status = 'lost'"
        ).fetchall()
        assert reruns == []
        before = terminal_snapshot(db)
        assert before, "no terminal rows to watch"
        await asyncio.sleep(1.0)
        assert terminal_snapshot(db) == before, "a terminal row changed after the fact"
        assert "postgres-only mode" in procs.logs()
    finally:
        procs.stop_all()
        app.close()
