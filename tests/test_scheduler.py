"""Periodic jobs: tick arithmetic, the scheduler pass on fabricated schedule rows (one
`run_once()` each), and exactly one job per tick when passes race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import ConfigError, Settings
from conveyor.scheduler import Scheduler
from conveyor.schedules import ScheduleError, due_ticks, next_tick
from conveyor.store import Store
from tests.factories import add_schedule

Db = psycopg.Connection[Any]
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


def jobs_of(db: Db, name: str) -> list[tuple[Any, ...]]:
    return db.execute(
        b"SELECT run_at, idempotency_key, task, queue_name, payload FROM jobs"
        b" WHERE idempotency_key LIKE %s ORDER BY run_at",
        (f"cron:{name}:%",),
    ).fetchall()


def schedule_row(db: Db, name: str) -> tuple[Any, ...]:
    row = db.execute(
        b"SELECT next_run_at, last_run_at, now() FROM schedules WHERE name = %s", (name,)
    ).fetchone()
    assert row is not None
    return row


# -- ticks, without a database ------------------------------------------------------------


def test_the_tick_due_now_runs_and_the_next_one_follows() -> None:
    now = datetime(2026, 1, 5, 10, 5, 20, tzinfo=UTC)
    due = due_ticks("*/5 * * * *", "UTC", now.replace(second=0), now, "skip", 10, 60)
    assert due.ticks == [now.replace(second=0)]
    assert due.next_run_at == datetime(2026, 1, 5, 10, 10, tzinfo=UTC)


def test_a_new_schedule_starts_at_its_next_tick() -> None:
    now = datetime(2026, 1, 5, 10, 5, 20, tzinfo=UTC)
    due = due_ticks("0 * * * *", "UTC", None, now, "backfill", 10, 60)
    assert due.ticks == []
    assert due.next_run_at == datetime(2026, 1, 5, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [("skip", 0), ("run_once", 1), ("backfill", 3)],
)
def test_misfire_policies_after_downtime(misfire: str, expected: int) -> None:
    now = datetime(2026, 1, 5, 10, 30, 0, tzinfo=UTC)
    missed_since = now - timedelta(hours=5)
    due = due_ticks("15 * * * *", "UTC", missed_since, now, misfire, 3, 60)
    assert len(due.ticks) == expected
    if due.ticks:  # the latest missed ticks, oldest first
        assert due.ticks[-1] == datetime(2026, 1, 5, 10, 15, tzinfo=UTC)
        assert due.ticks == sorted(due.ticks)
    assert due.next_run_at == datetime(2026, 1, 5, 11, 15, tzinfo=UTC)


def test_a_time_zone_moves_the_tick_and_spring_forward_runs_a_lost_time_at_the_hour() -> None:
    paris_winter = next_tick("30 2 * * *", "Europe/Paris", datetime(2026, 1, 5, tzinfo=UTC))
    assert paris_winter == datetime(2026, 1, 5, 1, 30, tzinfo=UTC)  # 02:30 CET
    # 2026-03-29: Paris skips from 02:00 to 03:00; the 02:30 tick runs at 03:00 CEST.
    spring = next_tick("30 2 * * *", "Europe/Paris", datetime(2026, 3, 29, tzinfo=UTC))
    assert spring == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    summer = next_tick("30 2 * * *", "Europe/Paris", datetime(2026, 3, 30, tzinfo=UTC))
    assert summer == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_fall_back_runs_a_named_hour_once_and_an_interval_in_both_passes() -> None:
    # 2026-10-25: Paris goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    first = next_tick("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 23, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    after = next_tick("30 2 * * *", "Europe/Paris", first)
    assert after == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # not the second 02:30
    moment, ticks = datetime(2026, 10, 24, 23, 50, tzinfo=UTC), []
    for _ in range(4):
        moment = next_tick("*/30 * * * *", "Europe/Paris", moment)
        ticks.append(moment)
    assert ticks == [datetime(2026, 10, 25, h, m, tzinfo=UTC) for h in (0, 1) for m in (0, 30)]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"misfire": "sometimes"}, "misfire"),
        ({"backfill_limit": 0}, "backfill_limit"),
        ({"name": "no spaces"}, "name"),
    ],
)
def test_a_bad_definition_in_code_is_refused_naming_the_field(
    app: Conveyor, options: dict[str, Any], field: str
) -> None:
    task = app.task(lambda payload: None, name="tick")
    with pytest.raises(ScheduleError, match=field):
        app.schedule(task, **{"cron": "* * * * *", **options})
    assert app.schedules == {}


def test_a_bad_schedule_in_configuration_names_its_key(
    settings_factory: Callable[..., Settings],
) -> None:
    bad = {"nightly": {"task": "t", "cron": "0 3 * *", "misfire": "never"}}
    with pytest.raises(ConfigError) as caught:
        settings_factory(schedules=bad)
    assert "schedules.nightly.cron" in str(caught.value)
    assert "schedules.nightly.misfire" in str(caught.value)


# -- the pass on fabricated rows ------------------------------------------------------------


async def test_a_due_tick_creates_exactly_one_job(settings: Settings, store: Store, db: Db) -> None:
    add_schedule(db, "every-minute", payload={"report": "daily"})
    tick, _, _ = schedule_row(db, "every-minute")
    assert await Scheduler(store, settings).run_once() == 1
    jobs = jobs_of(db, "every-minute")
    assert len(jobs) == 1
    run_at, key, task, queue, payload = jobs[0]
    assert (run_at, task, queue, payload) == (tick, "tick", "cron", {"report": "daily"})
    assert key == f"cron:every-minute:{tick.astimezone(UTC).isoformat()}"
    next_run_at, last_run_at, now = schedule_row(db, "every-minute")
    assert last_run_at == tick and now < next_run_at <= now + MINUTE
    # The next pass finds nothing due.
    assert await Scheduler(store, settings).run_once() == 0
    assert len(jobs_of(db, "every-minute")) == 1


async def test_a_new_schedule_gets_its_next_tick_and_no_job(
    settings: Settings, store: Store, db: Db
) -> None:
    add_schedule(db, "fresh", next_run_at=None)
    assert await Scheduler(store, settings).run_once() == 0
    next_run_at, last_run_at, now = schedule_row(db, "fresh")
    assert last_run_at is None and now < next_run_at <= now + MINUTE


async def test_a_paused_schedule_creates_nothing(settings: Settings, store: Store, db: Db) -> None:
    add_schedule(db, "held", paused=True, next_run_at="now() - interval '1 hour'")
    assert await Scheduler(store, settings).run_once() == 0
    assert jobs_of(db, "held") == []


@pytest.mark.parametrize(("misfire", "count"), [("skip", 0), ("run_once", 1), ("backfill", 3)])
async def test_misfire_policy_on_missed_ticks(
    settings_factory: Callable[..., Settings], store: Store, db: Db, misfire: str, count: int
) -> None:
    # No grace: every tick older than now was missed.
    settings = settings_factory(**{"scheduler.misfire_grace": 0})
    ten_minutes_ago = "date_trunc('minute', now()) - interval '10 minutes'"
    add_schedule(db, "late", misfire=misfire, backfill_limit=3, next_run_at=ten_minutes_ago)
    assert await Scheduler(store, settings).run_once() == count
    jobs = jobs_of(db, "late")
    assert len(jobs) == count
    runs = [job[0] for job in jobs]
    assert all(later - earlier == MINUTE for earlier, later in pairwise(runs))
    next_run_at, _, now = schedule_row(db, "late")
    assert now < next_run_at <= now + MINUTE


async def test_backfill_runs_every_missed_tick_within_its_limit(
    settings: Settings, store: Store, db: Db
) -> None:
    start = "date_trunc('minute', now()) - interval '5 minutes'"
    add_schedule(db, "catch-up", misfire="backfill", backfill_limit=100, next_run_at=start)
    first, _, _ = schedule_row(db, "catch-up")
    await Scheduler(store, settings).run_once()
    runs = [job[0] for job in jobs_of(db, "catch-up")]
    assert runs and runs[0] == first
    assert len(runs) in (6, 7)  # five missed and the current one (7 if a minute turned)
    assert all(later - earlier == MINUTE for earlier, later in pairwise(runs))


async def test_config_schedules_are_written_and_dropped_when_unconfigured(
    settings_factory: Callable[..., Settings], store: Store, db: Db
) -> None:
    nightly = {"task": "reports.nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
    configured = settings_factory(schedules={"nightly": nightly})
    await Scheduler(store, configured).run_once()
    row = db.execute(b"SELECT task, source, next_run_at IS NOT NULL FROM schedules").fetchall()
    assert row == [("reports.nightly", "config", True)]
    add_schedule(db, "from-code", next_run_at=None)
    await Scheduler(store, settings_factory()).run_once()
    names = db.execute(b"SELECT name FROM schedules").fetchall()
    assert names == [("from-code",)]


async def test_schedules_from_code_reach_the_table(app: Conveyor, db: Db) -> None:
    @app.periodic("*/5 * * * *", timezone="Europe/Paris", payload={"n": 1})
    @app.task(queue="reports")
    def report(payload: dict[str, int]) -> None:
        del payload

    assert app.sync_schedules() == 1
    assert app.sync_schedules() == 0  # unchanged: nothing written
    row = db.execute(b"SELECT name, cron, timezone, queue_name, payload FROM schedules").fetchone()
    assert row == (report.name, "*/5 * * * *", "Europe/Paris", "reports", {"n": 1})


async def test_racing_passes_make_exactly_one_job_per_tick(
    settings_factory: Callable[..., Settings], db: Db
) -> None:
    settings = settings_factory(**{"scheduler.misfire_grace": 0})
    start = "date_trunc('minute', now()) - interval '20 minutes'"
    for number in range(30):
        add_schedule(db, f"race-{number}", misfire="backfill", backfill_limit=4, next_run_at=start)
    stores = [await Store.open(settings, "test", 2) for _ in range(4)]
    try:
        for _ in range(3):
            await asyncio.gather(*(Scheduler(s, settings).run_once() for s in stores))
    finally:
        for opened in stores:
            await opened.close()
    counts = db.execute(
        b"SELECT count(*), count(DISTINCT idempotency_key), count(DISTINCT queue_name) FROM jobs"
    ).fetchone()
    assert counts == (30 * 4, 30 * 4, 1)


# -- the admin layer --------------------------------------------------------------------------


async def test_admin_lists_pauses_resumes_and_triggers_with_audit(
    settings: Settings, store: Store, db: Db
) -> None:
    from conveyor.admin import Admin, AdminNotFound

    add_schedule(db, "nightly", payload={"kind": "daily"})
    async with Admin(settings) as admin:
        (listed,) = await admin.schedules()
        assert (listed.name, listed.paused, listed.queue) == ("nightly", False, "cron")
        paused = await admin.pause_schedule("nightly", actor="cli:alice")
        assert paused.changed and not (await admin.pause_schedule("nightly", "cli:alice")).changed
        assert await Scheduler(store, settings).run_once() == 0  # paused: no tick job
        triggered = await admin.trigger_schedule("nightly", actor="cli:alice")
        resumed = await admin.resume_schedule("nightly", actor="cli:alice")
        assert resumed.changed
        (after,) = await admin.schedules()
        assert after.next_run_at is None and after.last_job_id == triggered.job_id
        with pytest.raises(AdminNotFound):
            await admin.trigger_schedule("nope", actor="cli:alice")
    job = db.execute(b"SELECT task, queue_name, payload FROM jobs").fetchall()
    assert job == [("tick", "cron", {"kind": "daily"})]
    audit = db.execute(b"SELECT action, target, result FROM audit_log ORDER BY id").fetchall()
    assert audit == [
        ("pause_schedule", "schedule:nightly", "ok"),
        ("pause_schedule", "schedule:nightly", "noop"),
        ("trigger_schedule", "schedule:nightly", "ok"),
        ("resume_schedule", "schedule:nightly", "ok"),
    ]


async def test_a_broken_row_is_reported_and_the_others_still_run(
    settings: Settings, store: Store, db: Db
) -> None:
    add_schedule(db, "a-broken", cron="not a cron")
    add_schedule(db, "b-zone", timezone="Mars/Olympus")
    add_schedule(db, "c-fine")
    scheduler = Scheduler(store, settings)
    assert await scheduler.run_once() == 1
    assert scheduler.counts["broken"] == 2
    assert len(jobs_of(db, "c-fine")) == 1


async def test_a_tick_job_payload_is_encrypted_like_an_enqueue(
    settings_factory: Callable[..., Settings], store: Store, db: Db
) -> None:
    from cryptography.fernet import Fernet

    from conveyor.encryption import PayloadCipher

    keys = [Fernet.generate_key().decode()]
    settings = settings_factory(**{"encryption.keys": keys, "encryption.fields": ["token"]})
    add_schedule(db, "sealed", payload={"token": "s3cret", "plain": 1})
    assert await Scheduler(store, settings).run_once() == 1
    row = db.execute(b"SELECT id, payload FROM jobs").fetchone()
    assert row is not None
    job_id, stored = row
    assert stored["plain"] == 1 and "s3cret" not in str(stored)
    cipher = PayloadCipher(keys, ["token"])
    assert cipher.decrypt(stored, job_id) == {"token": "s3cret", "plain": 1}


async def test_a_queuer_without_the_schedules_table_still_runs_its_leader_passes(
    settings: Settings, db: Db
) -> None:
    from conveyor.queuer import Queuer

    db.execute(b"DROP TABLE schedules")
    queuer = await Queuer.open(settings)
    try:
        await queuer._run_scheduler()  # logged, not raised
        assert queuer.scheduler.counts["enqueued"] == 0
    finally:
        await queuer.close()


def test_an_app_built_from_settings_with_schedules_keeps_them(
    settings_factory: Callable[..., Settings],
) -> None:
    nightly = {"task": "t", "cron": "0 3 * * *", "payload": {"a": 1}, "timeout": "5m"}
    app = Conveyor(settings_factory(schedules={"nightly": nightly}), schema="elsewhere")
    assert app.settings.database.schema_name == "elsewhere"
    assert app.settings.schedules["nightly"].timeout == 300.0
