"""The admin layer against real PostgreSQL and Redis, on fabricated rows.

States that take a real system a while to reach (dead, running, a worker gone silent)
are fabricated with `tests.factories`; the pause test drives a real in-process queuer
and worker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor.admin import (
    Admin,
    AdminConflict,
    AdminError,
    AdminForbidden,
    AdminNotFound,
    AdminUnavailable,
)
from conveyor.admin.explain import WaitFacts, why_waiting
from conveyor.admin.jobs import decode_cursor, encode_cursor
from conveyor.admin.models import LaneStats
from conveyor.admin.stats import queue_colour
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.ids import uuid7
from tests.conftest import Running, wait_until
from tests.factories import add_job, add_log, add_queue, add_worker, set_worker_health

ACTOR = "test:admin"


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(settings) as instance:
        yield instance


def status_of(db: psycopg.Connection[Any], job_id: UUID) -> tuple[Any, ...] | None:
    return db.execute(
        b"SELECT status, attempt, cancel_requested FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()


def audit_rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        b"SELECT actor, action, target, result, detail FROM audit_log ORDER BY id"
    ).fetchall()


# -- stats and workers ---------------------------------------------------------------------


async def test_stats_counts_every_state_per_queue(
    admin: Admin, db: psycopg.Connection[Any]
) -> None:
    queue = "email-sending"
    for priority in (10, 10, 10, 100, 100, 200):
        add_job(db, queue=queue, priority=priority)
    add_job(db, queue=queue, status="dispatched", priority=120)
    add_job(db, queue=queue, run_in=600)  # scheduled
    add_job(db, queue=queue, run_in=30, attempt=1)  # waiting out a retry backoff
    for _ in range(2):
        add_job(db, queue=queue, status="running", attempt=1, worker="w-1")
    dead = [add_job(db, queue=queue, status="dead", attempt=3) for _ in range(4)]
    for ago in (10, 20, 30, 1200, 1800):  # three within five minutes
        add_log(db, dead[0], queue=queue, ago=ago)
    for ago in (7200, 9000):  # older than an hour: not counted
        add_log(db, dead[0], queue=queue, ago=ago)
    add_log(db, dead[1], queue=queue, status="failed", ago=60)
    add_log(db, dead[1], queue=queue, status="lost", ago=60)
    add_log(db, dead[1], queue=queue, status="dead", ago=60)
    add_log(db, dead[1], queue=queue, status="cancelled", ago=60)  # not a failure
    add_queue(db, "quiet")
    add_job(db, queue="unregistered", status="completed", queue_row=False)

    stats = await admin.stats()

    assert [q.name for q in stats.queues] == [queue, "quiet", "unregistered"]
    email = stats.queue(queue)
    assert email is not None
    assert email.waiting == 7 and email.dispatched == 1
    assert {lane: figures.waiting for lane, figures in email.lanes.items()} == {
        "high": 3,
        "normal": 3,
        "low": 1,
    }
    assert email.scheduled == 2 and email.running == 2 and email.dead == 4
    assert email.completed_last_hour == 5 and email.failed_last_hour == 3
    assert email.throughput_per_minute == pytest.approx(3 / 5)
    assert email.oldest_waiting_age_seconds is not None
    assert email.oldest_waiting_age_seconds < 60
    # The built-in targets of the specification's table, per lane.
    assert email.lanes["high"].target_seconds == 60 and email.lanes["low"].target_seconds == 1800
    assert email.target_seconds == 300
    assert email.status == "green" and email.reasons == []
    assert not email.paused
    quiet = stats.queue("quiet")
    assert quiet is not None and quiet.waiting == 0 and quiet.status == "green"
    assert quiet.oldest_waiting_age_seconds is None
    assert stats.workers.total == 0
    json.dumps(stats.to_dict())  # JSON-ready as is


async def test_stats_colours_follow_the_thresholds(
    settings: Settings, settings_factory: Callable[..., Settings], db: psycopg.Connection[Any]
) -> None:
    strict = settings_factory(
        **{
            "thresholds.warning_waiting": 2,
            "thresholds.critical_waiting": 4,
            "thresholds.critical_failures_per_hour": 1,
        }
    )
    for _ in range(3):
        add_job(db, queue="busy")
    for _ in range(5):
        add_job(db, queue="flooded")
    failing = add_job(db, queue="failing", status="dead")
    add_log(db, failing, queue="failing", status="failed")
    add_log(db, failing, queue="failing", status="dead")
    add_job(db, queue="stale", age=600)  # older than the default 300 s target
    async with Admin(strict) as admin:
        stats = await admin.stats()
    colours = {q.name: q.status for q in stats.queues}
    assert colours == {"busy": "yellow", "failing": "red", "flooded": "red", "stale": "red"}
    stale = stats.queue("stale")
    assert stale is not None and "target" in stale.reasons[0]
    flooded = stats.queue("flooded")
    assert flooded is not None and "critical level of 4" in flooded.reasons[0]


def test_queue_colour_rules(settings: Settings) -> None:
    lane = LaneStats(waiting=1, oldest_waiting_age_seconds=10, target_seconds=60)
    assert queue_colour(settings, "q", 99, 10, {"high": lane}) == ("green", [])
    assert queue_colour(settings, "q", 100, 0, {"high": lane})[0] == "yellow"
    assert queue_colour(settings, "q", 1000, 0, {"high": lane})[0] == "yellow"
    assert queue_colour(settings, "q", 1001, 0, {"high": lane})[0] == "red"
    assert queue_colour(settings, "q", 0, 11, {"high": lane})[0] == "red"
    late = LaneStats(waiting=1, oldest_waiting_age_seconds=61, target_seconds=60)
    colour, reasons = queue_colour(settings, "q", 1, 0, {"high": late})
    assert colour == "red" and reasons == [
        "the oldest high-priority job has waited 61 s, over its 60 s target"
    ]


async def test_workers_and_their_liveness(admin: Admin, db: psycopg.Connection[Any]) -> None:
    add_worker(db, "w-alive", ["q", "other"], in_flight=2)
    add_worker(db, "w-silent", ["q"], silent_for=60)
    add_worker(db, "w-stopped", ["q"], stopped=True)
    add_job(db, queue="q")
    workers = {w.id: w for w in await admin.workers()}
    assert set(workers) == {"w-alive", "w-silent", "w-stopped"}
    assert workers["w-alive"].alive and workers["w-alive"].jobs_in_flight == 2
    assert workers["w-alive"].queues == ["q", "other"]
    assert not workers["w-silent"].alive and workers["w-silent"].heartbeat_age_seconds >= 59
    assert not workers["w-stopped"].alive and workers["w-stopped"].stopped is not None
    assert (await admin.workers())[0].id == "w-alive"  # live ones first
    stats = await admin.stats()
    assert stats.workers.total == 3 and stats.workers.alive == 1
    assert stats.workers.capacity == 5 and stats.workers.busy == 2
    q = stats.queue("q")
    assert q is not None and q.live_workers == 1


# -- peek, listings, detail ----------------------------------------------------------------


async def test_peek_follows_redis_order_then_priority(
    admin: Admin, db: psycopg.Connection[Any]
) -> None:
    high = add_job(db, status="dispatched", priority=10)
    first, second = (add_job(db, status="dispatched", priority=100) for _ in range(2))
    lost = add_job(db, status="dispatched", priority=100)  # not in Redis
    urgent = add_job(db, priority=5)
    older = add_job(db, priority=100, age=20)
    newer = add_job(db, priority=100, age=10)
    add_job(db, priority=1, run_in=300)  # not due yet
    add_job(db, queue="elsewhere", priority=1)
    await admin.lanes.client.lpush(admin.lanes.keys.lane("q", "high"), str(high))
    await admin.lanes.client.lpush(admin.lanes.keys.lane("q", "normal"), str(first), str(second))

    order = [job.id for job in await admin.peek("q")]
    assert order == [high, first, second, lost, urgent, older, newer]
    assert [job.id for job in await admin.peek("q", n=2)] == [high, first]
    normal = [job.id for job in await admin.peek("q", lane="normal")]
    assert normal == [first, second, lost, older, newer]
    with pytest.raises(AdminError, match="n must be"):
        await admin.peek("q", n=-1)
    with pytest.raises(AdminNotFound, match="unknown queue"):
        await admin.peek("nope")
    with pytest.raises(AdminError, match="lane must be"):
        await admin.peek("q", lane="urgent")


async def test_list_jobs_pages_newest_first_without_gaps(
    admin: Admin, db: psycopg.Connection[Any]
) -> None:
    for n in range(7):
        add_job(db, status="completed", age=100 - n)
    add_job(db, queue="other", status="dead", age=50.5)
    add_job(db, status="running", worker="w", age=49.5)
    add_job(db, status="dispatched", age=49.4)
    tie = db.execute(b"SELECT created FROM jobs WHERE status = 'running'").fetchone()
    assert tie is not None
    for _ in range(3):  # equal creation times: the id breaks the tie
        add_job(db, created=tie[0])
    rows = db.execute(b"SELECT id FROM jobs ORDER BY created DESC, id DESC").fetchall()
    expected = [row[0] for row in rows]
    assert len(expected) == 13
    seen: list[UUID] = []
    cursor: str | None = None
    while True:
        page = await admin.list_jobs(limit=3, after=cursor)
        seen += [job.id for job in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    only_q = await admin.list_jobs(queue="q", limit=100)
    assert {job.queue for job in only_q.items} == {"q"} and len(only_q.items) == 12


async def test_list_jobs_filters(admin: Admin, db: psycopg.Connection[Any]) -> None:
    fresh = add_job(db, payload={"email": "ada@example.com"})
    backoff = add_job(db, attempt=1, run_in=60, error="boom")
    old_dead = add_job(db, status="dead", age=7200, priority=200)
    running = add_job(db, status="running", worker="w")
    high = add_job(db, status="completed", priority=1)

    async def ids(**filters: Any) -> set[UUID]:
        return {job.id for job in (await admin.list_jobs(**filters)).items}

    assert await ids(status="queued") == {fresh}
    assert await ids(status="retry_scheduled") == {backoff}
    assert await ids(status="dead") == {old_dead}
    assert await ids(status="running") == {running}
    assert await ids(min_age_seconds=3600) == {old_dead}
    assert await ids(max_age_seconds=3600) == {fresh, backoff, running, high}
    assert await ids(lane="high") == {high}
    assert await ids(lane="low") == {old_dead}
    assert await ids(text="ada@example") == {fresh}
    assert await ids(text="100%_") == set()  # LIKE wildcards are taken literally
    page = await admin.list_jobs(status="retry_scheduled")
    assert page.items[0].status == "retry_scheduled" and page.items[0].stored_status == "queued"
    for bad, message in (
        ({"status": "failed"}, "status must be one of"),
        ({"limit": 0}, "limit must be"),
        ({"limit": 1001}, "limit must be"),
        ({"min_age_seconds": -1}, "non-negative"),
        ({"min_age_seconds": 10, "max_age_seconds": 5}, "must not be larger"),
        ({"after": "not-a-cursor"}, "invalid cursor"),
        ({"queue": "bad queue!"}, "queue name"),
        ({"text": ""}, "non-empty"),
    ):
        with pytest.raises(AdminError, match=message):
            await admin.list_jobs(**bad)
    with pytest.raises(AdminNotFound):
        await admin.list_jobs(queue="never-seen")


def test_cursor_round_trip() -> None:
    moment, job_id = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid7()
    assert decode_cursor(encode_cursor(moment, job_id)) == (moment, job_id)


async def test_job_detail_has_payload_and_attempts(
    admin: Admin, db: psycopg.Connection[Any]
) -> None:
    job_id = add_job(
        db,
        status="dead",
        attempt=2,
        max_attempts=2,
        error="ValueError: x",
        payload={"campaign": 7, "to": ["a@b.c"]},
    )
    add_log(
        db,
        job_id,
        status="failed",
        attempt=1,
        ago=20,
        message="ValueError: x",
        traceback="Traceback (most recent call last): ...",
        duration=1.5,
    )
    add_log(db, job_id, status="dead", attempt=2, ago=10, message="ValueError: x")
    detail = await admin.job_detail(str(job_id))
    assert detail.payload == {"campaign": 7, "to": ["a@b.c"]}
    assert detail.status == "dead" and detail.why_waiting is None
    assert [(a.attempt_number, a.status) for a in detail.attempts] == [(1, "failed"), (2, "dead")]
    assert detail.attempts[0].duration_seconds == pytest.approx(1.5)
    assert detail.attempts[0].traceback and detail.attempts[0].worker_id == "w-1"
    json.dumps(detail.to_dict())
    with pytest.raises(AdminNotFound):
        await admin.job_detail(uuid7())
    with pytest.raises(AdminError, match="not a job id"):
        await admin.job_detail("12345")


async def test_why_waiting_explains_each_case(admin: Admin, db: psycopg.Connection[Any]) -> None:
    async def why(job_id: UUID) -> str:
        text = (await admin.job_detail(job_id)).why_waiting
        assert text is not None
        return text

    scheduled = add_job(db, run_in=3600)
    assert (await why(scheduled)).startswith("Scheduled for later: due at")
    backoff = add_job(db, attempt=2, run_in=90, error="TimeoutError: slow")
    assert "Retry backoff: attempt 2 of 3 failed (TimeoutError: slow)" in await why(backoff)
    alone = add_job(db, queue="lonely")
    assert "No live worker serves queue 'lonely'" in await why(alone)
    add_worker(db, "w-1", ["q"])
    first = add_job(db, priority=10, age=5)
    behind = add_job(db, priority=100)
    add_job(db, priority=200)  # lower priority: not ahead
    assert "Next in line" in await why(first)
    assert "Waiting behind 1 job of higher or equal priority" in await why(behind)
    dispatched = add_job(db, status="dispatched")
    assert "not found in Redis" in await why(dispatched)
    await admin.lanes.client.lpush(
        admin.lanes.keys.lane("q", "normal"), str(dispatched), str(uuid7())
    )
    await admin.lanes.client.lpush(admin.lanes.keys.lane("q", "high"), str(uuid7()))
    text = await why(dispatched)
    assert "waiting for a free worker; 1 job ahead of it" in text
    assert "Waiting behind 2 jobs" in await why(behind)  # the dispatched one counts too
    await admin.pause("q", ACTOR)
    assert (await why(behind)).startswith("Queue 'q' is paused since")


def test_why_waiting_sentences() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = WaitFacts(
        status="queued",
        queue="q",
        attempt=0,
        max_attempts=3,
        run_at=now,
        now=now,
        dispatched_at=None,
        last_error=None,
        queue_paused=False,
        paused_at=None,
        ready_ahead=0,
        dispatched_ahead=0,
        ahead_cap=100,
        live_workers=1,
    )
    assert why_waiting(base) is not None
    for status in ("running", "completed", "dead", "cancelled"):
        assert why_waiting(WaitFacts(**{**base.__dict__, "status": status})) is None
    capped = WaitFacts(**{**base.__dict__, "ready_ahead": 100, "dispatched_ahead": 3})
    assert "at least 103 jobs" in (why_waiting(capped) or "")
    paused_later = WaitFacts(
        **{**base.__dict__, "queue_paused": True, "run_at": now + timedelta(minutes=5)}
    )
    text = why_waiting(paused_later) or ""
    assert text.startswith("Queue 'q' is paused") and "due at" in text and "in 5m" in text


# -- actions -------------------------------------------------------------------------------


async def test_retry_one_job(admin: Admin, db: psycopg.Connection[Any]) -> None:
    dead = add_job(db, status="dead", attempt=3, error="boom")
    result = await admin.retry(dead, ACTOR)
    assert result.changed and result.previous_status == "dead" and result.status == "queued"
    assert status_of(db, dead) == ("queued", 0, False)
    row = db.execute(b"SELECT run_at <= now() FROM jobs WHERE id = %s", (dead,)).fetchone()
    assert row == (True,)
    log = db.execute(b"SELECT status, attempt_number, log_message FROM job_logs").fetchall()
    assert log == [("retried", 3, f"retried by {ACTOR}")]
    assert audit_rows(db) == [
        (ACTOR, "retry", f"job:{dead}", "ok", {"previous_status": "dead", "queue": "q"})
    ]
    backoff = add_job(db, attempt=1, run_in=300)
    assert (await admin.retry(backoff, ACTOR)).previous_status == "retry_scheduled"
    assert status_of(db, backoff) == ("queued", 0, False)
    for state, message in (
        ("running", "is running"),
        ("dispatched", "about to run"),
        ("queued", "already queued"),
    ):
        job_id = add_job(db, status=state, worker="w" if state == "running" else None)
        with pytest.raises(AdminConflict, match=message):
            await admin.retry(job_id, ACTOR)
        assert status_of(db, job_id) == (state, 0, False)
    with pytest.raises(AdminNotFound):
        await admin.retry(uuid7(), ACTOR)
    with pytest.raises(AdminError, match="actor"):
        await admin.retry(dead, "  ")
    assert len(audit_rows(db)) == 2  # refusals change nothing, audit included


async def test_retry_jobs_in_bulk(admin: Admin, db: psycopg.Connection[Any]) -> None:
    done = [add_job(db, status=s) for s in ("dead", "cancelled", "completed")]
    busy = add_job(db, status="running", worker="w")
    missing = uuid7()
    result = await admin.retry_jobs([*done, busy, missing, done[0]], ACTOR)
    assert result.count == 3 and set(result.sample) == set(done)
    assert result.skipped == [busy, missing]
    assert all(status_of(db, job_id) == ("queued", 0, False) for job_id in done)
    with pytest.raises(AdminError, match="no job ids"):
        await admin.retry_jobs([], ACTOR)


async def test_concurrent_replays_make_one_attempt_per_job(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    dead = [add_job(db, status="dead", attempt=3, queue=f"q{n % 3}") for n in range(150)]
    async with Admin(settings) as first, Admin(settings) as second:
        for _ in range(3):
            one, two = await asyncio.gather(
                first.retry_dead("ops:one"), second.retry_dead("ops:two")
            )
            assert one.count + two.count == len(dead)
            rows = db.execute(
                b"SELECT status, attempt, count(*) FROM jobs GROUP BY 1, 2"
            ).fetchall()
            assert rows == [("queued", 0, len(dead))]
            db.execute(b"UPDATE jobs SET status = 'dead', attempt = 3")  # and again
    replays = db.execute(
        b"SELECT job_id, count(*) FROM job_logs WHERE status = 'retried' GROUP BY job_id"
    ).fetchall()
    assert len(replays) == len(dead) and {row[1] for row in replays} == {3}
    assert len([row for row in audit_rows(db) if row[1] == "retry_dead"]) == 6


async def test_retry_dead_filters_and_dry_run(admin: Admin, db: psycopg.Connection[Any]) -> None:
    a1 = add_job(db, queue="a", task="send", status="dead")
    a2 = add_job(db, queue="a", task="other", status="dead")
    b1 = add_job(db, queue="b", task="send", status="dead")
    add_job(db, queue="a", status="completed")
    preview = await admin.retry_dead(ACTOR, dry_run=True)
    assert preview.dry_run and preview.count == 3 and set(preview.sample) == {a1, a2, b1}
    assert audit_rows(db) == [] and status_of(db, a1) == ("dead", 0, False)
    assert (await admin.retry_dead(ACTOR, queue="a", task="send")).sample == [a1]
    assert (await admin.retry_dead(ACTOR, ids=[b1, a1])).sample == [b1]
    result = await admin.retry_dead(ACTOR, queue="a")
    assert result.sample == [a2]
    assert (await admin.retry_dead(ACTOR)).count == 0
    assert [row[3] for row in audit_rows(db)] == ["ok", "ok", "ok", "noop"]
    with pytest.raises(AdminNotFound):
        await admin.retry_dead(ACTOR, queue="nowhere")


async def test_delete(admin: Admin, db: psycopg.Connection[Any]) -> None:
    queued = add_job(db)
    result = await admin.delete(queued, ACTOR)
    assert result.status == "deleted" and status_of(db, queued) is None
    running = add_job(db, status="running", worker="w")
    with pytest.raises(AdminConflict, match="cancel it first"):
        await admin.delete(running, ACTOR)
    assert status_of(db, running) == ("running", 0, False)
    others = [add_job(db, status=s) for s in ("dead", "dispatched", "completed")]
    bulk = await admin.delete_jobs([*others, running], ACTOR)
    assert bulk.count == 2 and bulk.skipped == [others[0], running], "dead needs purge_dead"
    with pytest.raises(AdminForbidden, match="admin role"):
        await admin.delete(others[0], ACTOR)
    bulk = await admin.delete_jobs([others[0], running], ACTOR, purge_dead=True)
    assert bulk.count == 1 and bulk.skipped == [running]
    assert [row[1] for row in audit_rows(db)] == ["delete", "delete_jobs", "delete_jobs"]
    with pytest.raises(AdminNotFound):
        await admin.delete(queued, ACTOR)


async def test_cancel(admin: Admin, db: psycopg.Connection[Any]) -> None:
    waiting = add_job(db)
    result = await admin.cancel(waiting, ACTOR)
    assert result.changed and result.status == "cancelled"
    assert status_of(db, waiting) == ("cancelled", 0, False)
    log = db.execute(b"SELECT status, log_message FROM job_logs WHERE job_id = %s", (waiting,))
    assert log.fetchall() == [("cancelled", f"cancelled by {ACTOR}")]
    running = add_job(db, status="running", attempt=1, worker="w")
    assert (await admin.cancel(running, ACTOR)).message.endswith("asked to stop")
    assert status_of(db, running) == ("running", 1, True)
    again = await admin.cancel(running, ACTOR)
    assert not again.changed
    with pytest.raises(AdminConflict, match="nothing to cancel"):
        await admin.cancel(waiting, ACTOR)
    assert [row[3] for row in audit_rows(db)] == ["ok", "ok", "noop"]


async def test_pause_and_resume(
    admin: Admin, settings: Settings, db: psycopg.Connection[Any]
) -> None:
    dispatched = add_job(db, status="dispatched")
    await admin.lanes.client.lpush(admin.lanes.keys.lane("q", "normal"), str(dispatched))
    result = await admin.pause("q", ACTOR)
    assert result.changed and result.requeued == 1 and result.redis_synced
    assert status_of(db, dispatched) == ("queued", 0, False)
    row = db.execute(b"SELECT is_active, paused_at IS NOT NULL FROM job_queues WHERE name = 'q'")
    assert row.fetchone() == (False, True)
    assert await admin.lanes.paused() == {"q"}
    assert await admin.lanes.client.llen(admin.lanes.keys.lane("q", "normal")) == 0
    stats = await admin.stats()
    assert stats.queues[0].paused and stats.queues[0].paused_at is not None
    assert not (await admin.pause("q", ACTOR)).changed

    with psycopg.connect(settings.database.url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{admin.channel}"'.encode())
        resumed = await admin.resume("q", ACTOR)
        notices = list(listener.notifies(timeout=5, stop_after=1))
    assert resumed.changed and notices and notices[0].channel == admin.channel
    assert await admin.lanes.paused() == set()
    assert db.execute(b"SELECT is_active, paused_at FROM job_queues").fetchone() == (True, None)
    assert not (await admin.resume("q", ACTOR)).changed
    assert [(row[1], row[3]) for row in audit_rows(db)] == [
        ("pause", "ok"),
        ("pause", "noop"),
        ("resume", "ok"),
        ("resume", "noop"),
    ]
    # A queue known from the settings can be paused before its first job.
    assert (await admin.pause("email-sending", ACTOR)).changed
    with pytest.raises(AdminNotFound, match="unknown queue"):
        await admin.pause("typo", ACTOR)
    with pytest.raises(AdminError, match="queue name"):
        await admin.pause("q:high", ACTOR)


async def test_pause_holds_jobs_even_if_already_dispatched(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    ran: list[int] = []

    @app.task(queue="mail")
    def send(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    # No maintenance: the reconciler would put the pause back into Redis (it syncs the
    # paused set from PostgreSQL) and undo the race this test stages below.
    running.queuer(maintenance=False)
    ids = [app.enqueue(send, {"n": n}) for n in range(5)]
    await wait_until(
        lambda: (
            db.execute(b"SELECT count(*) FROM jobs WHERE status = 'dispatched'").fetchone() == (5,)
        ),
        message="jobs dispatched to Redis",
    )
    async with Admin(app.settings) as admin:
        result = await admin.pause("mail", ACTOR)
        assert result.requeued == 5
        # Stage the race a pause must survive: Redis forgets the pause while the ids are
        # still in a lane and PostgreSQL calls them dispatched. The claim must refuse.
        await admin.lanes.resume("mail")
        db.execute(b"UPDATE jobs SET status = 'dispatched', dispatched_at = now()")
        await admin.lanes.client.lpush(admin.lanes.keys.lane("mail", "normal"), *map(str, ids))
        worker = running.worker(["mail"])
        await wait_until(lambda: worker.counts["dropped"] == 5, message="claims refused")
        assert db.execute(b"SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone() == (5,)
        await asyncio.sleep(1.5)
        assert ran == []
        assert db.execute(b"SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone() == (5,)
        await admin.resume("mail", ACTOR)
    await wait_until(
        lambda: (
            db.execute(b"SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone() == (5,)
        ),
        message="jobs completed after resume",
    )
    assert sorted(ran) == list(range(5))


async def test_pause_stops_a_running_worker(
    app: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    ran: list[int] = []
    beacons: list[int] = []

    @app.task(queue="mail")
    async def send(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    # A job on another queue, enqueued after the paused ones: once it has run, the queuer
    # has passed over the paused queue and the worker has fetched again, so "nothing
    # happened to the paused jobs" is an observation, not the end of a sleep.
    @app.task(queue="beacon")
    async def beacon(payload: dict[str, int]) -> None:
        beacons.append(payload["n"])

    async def after_a_full_pass(n: int) -> None:
        await app.aenqueue(beacon, {"n": n})
        await wait_until(lambda: n in beacons, timeout=60, message=f"beacon {n} ran")

    def count(status: str) -> int:
        row = db.execute(
            b"SELECT count(*) FROM jobs WHERE status = %s AND queue_name = 'mail'", (status,)
        ).fetchone()
        return row[0] if row else 0

    # No maintenance: the reconciler would put the pause back into Redis (it syncs the
    # paused set from PostgreSQL) and undo the race staged below.
    running.queuer(maintenance=False)
    worker = running.worker(["mail", "beacon"])
    await app.aenqueue(send, {"n": 0})
    await wait_until(lambda: ran == [0], message="the worker runs jobs before the pause")
    async with Admin(app.settings) as admin:
        await admin.pause("mail", ACTOR)
        ids = [await app.aenqueue(send, {"n": n}) for n in range(1, 6)]
        await after_a_full_pass(1)
        assert ran == [0] and count("queued") == 5  # not dispatched, not run
        # Ids that reach the lanes anyway (Redis lost the pause set in between) are
        # popped by the live worker and refused at claim time.
        await admin.lanes.resume("mail")
        db.execute(
            b"UPDATE jobs SET status = 'dispatched', dispatched_at = now() "
            b"WHERE status = 'queued' AND queue_name = 'mail'"
        )
        await admin.lanes.client.lpush(admin.lanes.keys.lane("mail", "normal"), *map(str, ids))
        await wait_until(lambda: worker.counts["dropped"] >= 5, message="claims refused")
        await after_a_full_pass(2)
        assert ran == [0] and count("queued") == 5
        await admin.resume("mail", ACTOR)
    await wait_until(
        lambda: count("completed") == 6, timeout=60, message="jobs completed after resume"
    )
    assert sorted(ran) == list(range(6))


async def test_purge_dead(admin: Admin, db: psycopg.Connection[Any]) -> None:
    dead_a = [add_job(db, queue="a", status="dead") for _ in range(3)]
    dead_b = add_job(db, queue="b", status="dead")
    kept = add_job(db, queue="a", status="completed")
    preview = await admin.purge_dead(ACTOR)
    assert preview.dry_run and preview.count == 4
    assert set(preview.sample) == {*dead_a, dead_b}
    assert db.execute(b"SELECT count(*) FROM jobs").fetchone() == (5,)
    assert audit_rows(db) == []
    cleared = await admin.clear_failed("a", ACTOR)
    assert cleared.count == 3 and cleared.action == "clear_failed"
    assert status_of(db, dead_b) is not None and status_of(db, kept) is not None
    purged = await admin.purge_dead(ACTOR, dry_run=False)
    assert purged.count == 1 and purged.sample == [dead_b]
    assert [(row[1], row[4]["count"]) for row in audit_rows(db)] == [
        ("clear_failed", 3),
        ("purge_dead", 1),
    ]


async def test_audit_log_newest_first(admin: Admin, db: psycopg.Connection[Any]) -> None:
    add_job(db, queue="a")
    await admin.pause("a", "alice")
    await admin.resume("a", "bob")
    entries = await admin.audit_log(limit=10)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("bob", "resume", "queue:a"),
        ("alice", "pause", "queue:a"),
    ]
    assert len(await admin.audit_log(limit=1)) == 1
    with pytest.raises(AdminError):
        await admin.audit_log(limit=-5)


# -- health --------------------------------------------------------------------------------


async def test_health_reports_each_part(admin: Admin, db: psycopg.Connection[Any]) -> None:
    add_job(db, queue="waiting")
    report = await admin.health()
    assert report.database.status == "healthy" and report.database.latency_ms is not None
    assert report.redis.status in ("healthy", "warning")
    assert report.redis.latency_ms is not None and report.redis.maxmemory_policy
    assert report.workers.status == "warning"
    assert report.workers.queues_without_workers == ["waiting"]
    assert report.queues.status == "healthy" and report.queues.queues[0].name == "waiting"
    assert report.performance.status == "healthy"
    assert report.overall_status == "warning"
    assert (report.mode, report.mode_reason) == ("normal", None)
    add_worker(db, "w-1", ["waiting"])
    assert (await admin.health()).workers.status == "healthy"
    json.dumps(report.to_dict())


async def test_health_never_raises_when_servers_are_down(
    settings: Settings, settings_factory: Callable[..., Settings]
) -> None:
    no_redis = settings_factory(**{"redis.url": "redis://127.0.0.1:1/0"})
    async with Admin(no_redis) as admin:
        report = await admin.health()
    assert report.redis.status == "critical" and report.redis.error
    assert report.database.status == "healthy" and report.overall_status == "critical"
    assert report.mode == "postgres-only"
    assert report.mode_reason == f"Redis unreachable: {report.redis.error}"

    no_db = settings_factory(
        **{
            "database.url": "postgresql://postgres@127.0.0.1:1/postgres",
            "database.connect_timeout": 1,
        }
    )
    async with Admin(no_db) as admin:
        report = await admin.health()
        assert report.database.status == "critical" and report.database.error
        assert report.queues.status == "critical" and report.workers.status == "critical"
        assert report.overall_status == "critical"
        assert (report.mode, report.mode_reason) == ("normal", None), "nothing works"
        with pytest.raises(AdminUnavailable, match="PostgreSQL is unavailable"):
            await admin.stats()


async def test_redis_outage_during_pause_and_peek(
    settings: Settings, settings_factory: Callable[..., Settings], db: psycopg.Connection[Any]
) -> None:
    """PostgreSQL governs a pause, so a Redis outage is reported, not raised."""
    queued = add_job(db)
    dispatched = add_job(db, status="dispatched", age=1)
    no_redis = settings_factory(**{"redis.url": "redis://127.0.0.1:1/0"})
    async with Admin(no_redis) as admin:
        assert [job.id for job in await admin.peek("q")] == [dispatched, queued]
        paused = await admin.pause("q", ACTOR)
        assert paused.changed and not paused.redis_synced and "Redis" in paused.message
        resumed = await admin.resume("q", ACTOR)
        assert resumed.changed and not resumed.redis_synced and "resume again" in resumed.message
    assert [row[1] for row in audit_rows(db)] == ["pause", "resume"]


async def test_bad_input_is_a_value_error_and_changes_nothing(
    admin: Admin, db: psycopg.Connection[Any]
) -> None:
    job_id = add_job(db, status="dead")
    calls = [
        admin.retry("not-a-uuid", ACTOR),
        admin.delete(job_id, ""),
        admin.retry_jobs(["x"], ACTOR),
        admin.delete_jobs("abc", ACTOR),
        admin.retry_dead(ACTOR, ids=[]),
        admin.purge_dead(ACTOR, queue="bad name"),
        admin.pause("", ACTOR),
        admin.peek("q", n=0),
        admin.peek("q", n=True),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            await call
    assert status_of(db, job_id) == ("dead", 0, False) and audit_rows(db) == []


async def test_workers_report_their_health(admin: Admin, db: psycopg.Connection[Any]) -> None:
    add_worker(db, "w-busy", ["q"])
    set_worker_health(db, "w-busy", up_for=3720, postgres_only=True, breakers_open=("mail", "sms"))
    add_worker(db, "w-new", ["q"])
    add_worker(db, "w-crashed", ["q"], silent_for=600)
    set_worker_health(db, "w-crashed", up_for=3600)
    workers = {w.id: w for w in await admin.workers()}
    busy, new = workers["w-busy"], workers["w-new"]
    # Up until its last heartbeat, ten minutes ago: not still counting.
    assert 2999 <= workers["w-crashed"].uptime_seconds < 3100
    assert 3719 <= busy.uptime_seconds < 3800
    assert (busy.rss_bytes, busy.jobs_processed, busy.jobs_failed) == (123 << 20, 40, 4)
    assert busy.busy_seconds == 0.492
    assert busy.avg_processing_seconds is not None
    assert abs(busy.avg_processing_seconds - 0.0123) < 1e-9
    assert busy.postgres_only and busy.breakers_open == ["mail", "sms"]
    # A worker that has not reported yet: no memory figure, no average, no flags.
    assert (new.rss_bytes, new.jobs_processed, new.avg_processing_seconds) == (None, 0, None)
    assert not new.postgres_only and new.breakers_open == []
