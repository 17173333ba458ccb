"""The metrics history: the leader's rollup on fabricated rows (one `run_once()` each),
its hourly summary, pruning, and the admin's series (docs/metrics-history.md)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from conveyor.admin import Admin, AdminError, AdminForbidden, AdminNotFound
from conveyor.config import ConfigError, Settings
from conveyor.maintenance import Pruner
from conveyor.rollup import MetricsRollup
from conveyor.scope import Scope
from conveyor.store import Store
from conveyor.vocabulary import (
    COMPLETED,
    DEAD,
    LOG_CANCELLED,
    LOG_COMPLETED,
    LOG_DEAD,
    LOG_FAILED,
    LOG_HANDED_BACK,
    LOG_LOST,
    QUEUED,
    RUNNING,
)
from tests.conftest import Running, wait_until
from tests.factories import add_history, add_job, add_log

Db = psycopg.Connection[Any]
HOURS = 3600.0
COLUMNS = (
    "enqueued, completed, failed, dead, retried, rescued, waiting, running, oldest_wait,"
    " run_seconds, run_p50, run_p95, run_p99, wait_p50, wait_p95, wait_p99"
)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


def minute_start(db: Db, minutes_back: int) -> datetime:
    """The start of the minute `minutes_back` minutes before the current one."""
    row = db.execute(
        b"SELECT date_trunc('minute', now()) - %s * interval '1 minute'", (minutes_back,)
    ).fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def seconds_ago(db: Db, moment: datetime) -> float:
    row = db.execute(b"SELECT extract(epoch FROM now() - %s)::float8", (moment,)).fetchone()
    assert row is not None
    return float(row[0])


def log_at(db: Db, job: Any, finished: datetime, **fields: Any) -> None:
    """A job_logs row of queue "mail" finished at `finished` (`duration` after its start)."""
    add_log(db, job, queue="mail", ago=seconds_ago(db, finished), **fields)


def minute_rows(db: Db, table: str = "metrics_minutes") -> dict[tuple[Any, ...], dict[str, Any]]:
    names = [name.strip() for name in COLUMNS.split(",")]
    found = db.execute(
        f"SELECT bucket, queue_name, lane, {COLUMNS} FROM {table}".encode()
    ).fetchall()
    return {tuple(row[:3]): dict(zip(names, row[3:], strict=True)) for row in found}


def set_watermark(db: Db, moment: datetime) -> None:
    db.execute(
        b"INSERT INTO metrics_rollup_state (rolled_through) VALUES (%s)"
        b" ON CONFLICT (singleton) DO UPDATE SET rolled_through = excluded.rolled_through",
        (moment,),
    )


async def test_rollup_counts_each_outcome_per_queue_and_lane(
    settings: Settings, db: Db, store: Store
) -> None:
    minute = minute_start(db, 5)
    second = timedelta(seconds=1)
    long_ago = minute - timedelta(hours=2)  # created outside the rolled-up range
    # mail, normal lane: created in the minute, waited 10 s, ran 5 s, completed.
    done = add_job(
        db,
        "mail",
        status=COMPLETED,
        attempt=1,
        created=minute + 5 * second,
        run_at=minute + 5 * second,
    )
    log_at(db, done, minute + 20 * second, status=LOG_COMPLETED, duration=5.0)
    # A failed attempt that will run again: counted, ran 1 s; its wait is unknown because
    # the job's run_at now belongs to the next attempt.
    retrying = add_job(
        db, "mail", status=QUEUED, attempt=1, created=long_ago, run_at=minute + timedelta(days=1)
    )
    log_at(db, retrying, minute + 30 * second, status=LOG_FAILED, duration=1.0)
    # A rescued attempt (the worker was lost): failed, retried and rescued; no run time.
    rescued = add_job(
        db, "mail", status=QUEUED, attempt=1, created=long_ago, run_at=minute + timedelta(days=1)
    )
    log_at(db, rescued, minute + 40 * second, status=LOG_LOST, duration=50.0)
    # Outcomes that are no attempt's result: not counted.
    other = add_job(db, "mail", status=QUEUED, created=long_ago, run_at=minute + timedelta(days=1))
    log_at(db, other, minute + 41 * second, status=LOG_CANCELLED)
    log_at(db, other, minute + 42 * second, status=LOG_HANDED_BACK)
    # mail, high lane: the last attempt failed, the job is dead; ran 2 s after a 68 s wait.
    dead = add_job(
        db,
        "mail",
        status=DEAD,
        priority=10,
        attempt=3,
        created=long_ago,
        run_at=minute - 60 * second,
    )
    log_at(db, dead, minute + 10 * second, status=LOG_DEAD, attempt=3, duration=2.0)
    # Gauges, read at the newest minute's end: one ready job, one running.
    add_job(db, "mail", status=QUEUED, created=long_ago, run_at=long_ago)
    add_job(db, "mail", status=RUNNING, attempt=1, created=long_ago, run_at=long_ago)

    rolled = await MetricsRollup(store, settings).run_once()

    assert rolled is not None
    newest = rolled.rolled_to - timedelta(minutes=1)
    assert newest > minute
    rows = minute_rows(db)
    normal = rows[(minute, "mail", "normal")]
    assert normal == {
        "enqueued": 1,
        "completed": 1,
        "failed": 2,
        "dead": 0,
        "retried": 2,
        "rescued": 1,
        "waiting": None,  # an older minute: its end is past, not measured now
        "running": None,
        "oldest_wait": None,
        "run_seconds": pytest.approx(6.0),  # 5 s completed + 1 s failed; a lost one never ran
        "run_p50": pytest.approx(3.0),
        "run_p95": pytest.approx(4.8),
        "run_p99": pytest.approx(4.96),
        "wait_p50": pytest.approx(10.0, abs=0.5),
        "wait_p95": pytest.approx(10.0, abs=0.5),
        "wait_p99": pytest.approx(10.0, abs=0.5),
    }
    high = rows[(minute, "mail", "high")]
    assert (high["completed"], high["failed"], high["dead"], high["retried"]) == (0, 1, 1, 0)
    assert (high["enqueued"], high["rescued"]) == (0, 0)
    assert high["run_p99"] == pytest.approx(2.0)
    assert high["wait_p50"] == pytest.approx(68.0, abs=0.5)
    gauges = rows[(newest, "mail", "normal")]
    assert (gauges["waiting"], gauges["running"], gauges["completed"]) == (1, 1, 0)
    assert gauges["oldest_wait"] == pytest.approx(2 * HOURS + 300, abs=120)
    # The same pass wrote the hour the minute belongs to, summed from its minutes.
    hours = minute_rows(db, "metrics_hours")
    hour = hours[(minute.replace(minute=0), "mail", "normal")]
    assert (hour["completed"], hour["failed"], hour["enqueued"]) == (1, 2, 1)
    assert hour["run_p95"] == pytest.approx(4.8)
    assert hour["run_seconds"] == pytest.approx(6.0)
    # The two jobs created two hours ago fall outside the 60 minutes one pass covers.
    assert set(rows) == {(minute, "mail", "normal"), (minute, "mail", "high"), gauges_key(newest)}


def gauges_key(newest: datetime) -> tuple[datetime, str, str]:
    return (newest, "mail", "normal")


async def test_the_leader_queuer_runs_the_rollup(running: Running, db: Db) -> None:
    minute = minute_start(db, 2)
    job = add_job(db, "mail", status=COMPLETED, attempt=1, created=minute)
    log_at(db, job, minute + timedelta(seconds=30), status=LOG_COMPLETED)
    running.queuer()

    def rolled() -> bool:
        found = db.execute(
            b"SELECT completed FROM metrics_minutes WHERE bucket = %s AND queue_name = 'mail'",
            (minute,),
        ).fetchone()
        return found == (1,)

    await wait_until(rolled, message="the leader's first rollup pass")


async def test_rerun_over_the_same_minutes_writes_the_same_rows(
    settings: Settings, db: Db, store: Store
) -> None:
    minute = minute_start(db, 3)
    for offset, status in enumerate((LOG_COMPLETED, LOG_COMPLETED, LOG_FAILED)):
        job = add_job(db, "mail", status=COMPLETED, attempt=1, created=minute)
        log_at(db, job, minute + timedelta(seconds=10 + offset), status=status, duration=offset)
    rollup = MetricsRollup(store, settings)
    assert await rollup.run_once() is not None
    first = minute_rows(db)
    hours = minute_rows(db, "metrics_hours")
    db.execute(b"DELETE FROM metrics_rollup_state")  # as a second leader that missed it

    assert await rollup.run_once() is not None

    again = minute_rows(db)
    assert first and first.keys() <= again.keys()
    for key, figures in first.items():
        assert again[key] == figures or key[0] >= minute_start(db, 2)
    assert minute_rows(db, "metrics_hours").keys() >= hours.keys()
    assert again[(minute, "mail", "normal")]["completed"] == 2


async def test_catch_up_writes_every_missed_minute_within_the_bound(
    settings: Settings, db: Db, store: Store
) -> None:
    job = add_job(db, "mail", status=COMPLETED, attempt=1, created=minute_start(db, 200))
    missed = [minute_start(db, back) for back in (8, 6, 3)]
    too_old = minute_start(db, 90)  # past the 60 minutes one pass catches up
    already = minute_start(db, 12)  # before the watermark: written by an earlier pass
    for moment in [*missed, too_old, already]:
        log_at(db, job, moment + timedelta(seconds=30), status=LOG_COMPLETED)
    set_watermark(db, minute_start(db, 150))

    rolled = await MetricsRollup(store, settings).run_once()

    assert rolled is not None
    assert rolled.rolled_from == rolled.rolled_to - timedelta(minutes=60)
    completed = {key[0] for key, row in minute_rows(db).items() if row["completed"]}
    assert completed == {*missed, already}
    set_watermark(db, minute_start(db, 10))
    db.execute(b"DELETE FROM metrics_minutes")
    await MetricsRollup(store, settings).run_once()
    completed = {key[0] for key, row in minute_rows(db).items() if row["completed"]}
    assert completed == set(missed), "minutes before the watermark are not written again"


async def test_hour_rows_sum_their_minutes(settings: Settings, db: Db, store: Store) -> None:
    hour_row = db.execute(b"SELECT date_trunc('hour', now()) - interval '3 hours'").fetchone()
    assert hour_row is not None
    hour: datetime = hour_row[0]
    # Minute rows as earlier passes wrote them; the pass below rewrites their hour.
    for minute, completed, p95, waiting in ((5, 4, 1.0, None), (20, 6, 3.0, 7), (59, 1, 2.0, 2)):
        db.execute(
            b"INSERT INTO metrics_minutes (bucket, queue_name, lane, completed, failed,"
            b" run_p95, waiting, running) VALUES (%s, 'mail', 'normal', %s, 1, %s, %s, %s)",
            (hour + timedelta(minutes=minute), completed, p95, waiting, waiting),
        )
    db.execute(
        b"INSERT INTO metrics_minutes (bucket, queue_name, lane, completed, waiting, running)"
        b" VALUES (%s, 'mail', 'low', 3, 1, 0)",
        (hour + timedelta(minutes=30),),
    )
    set_watermark(db, hour + timedelta(minutes=50))
    async with store.transaction() as tx:
        await tx.roll_up_hours(hour, hour + timedelta(hours=1))

    rows = minute_rows(db, "metrics_hours")
    normal = rows[(hour, "mail", "normal")]
    assert (normal["completed"], normal["failed"], normal["run_p95"]) == (11, 3, 3.0)
    assert (normal["waiting"], normal["running"]) == (2, 2), "the hour's last sample"
    low = rows[(hour, "mail", "low")]
    assert (low["completed"], low["waiting"], low["running"]) == (3, 0, 0)


async def test_pruner_drops_history_past_its_retention(
    settings_factory: Any, settings: Settings, db: Db, store: Store
) -> None:
    add_history(db, 3 * 60 + 1, "mail", completed=1)  # just over 3 hours old
    add_history(db, 2 * 60 - 1, "mail", completed=1)
    add_history(db, 5 * 24 + 1, "mail", hourly=True, completed=1)
    add_history(db, 5 * 24 - 1, "mail", hourly=True, completed=1)
    short = settings_factory(**{"metrics.minute_retention": "3h", "metrics.hour_retention": "5d"})

    result = await Pruner(store, short).run_once()

    assert (result.metrics_minutes, result.metrics_hours) == (1, 1)
    assert len(minute_rows(db)) == 1
    assert len(minute_rows(db, "metrics_hours")) == 1


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(settings) as instance:
        yield instance


async def test_history_fills_gaps_and_sums_the_queues(admin: Admin, db: Db) -> None:
    add_history(db, 1, "mail", completed=3, failed=1, run_p95=2.0, waiting=4)
    add_history(db, 1, "mail", lane="high", completed=1, run_p95=5.0, waiting=1)
    add_history(db, 1, "sms", completed=2, dead=1, run_p95=1.0)
    add_history(db, 30, "sms", completed=7)
    add_history(db, 90, "sms", completed=100)  # outside the hour

    history = await admin.metrics_history("1h")

    assert history.resolution == "minute"
    assert history.queues == ["mail", "sms"]
    assert len(history.points) in (60, 61)  # the window's first minute is partly in it
    assert [b.bucket - a.bucket for a, b in itertools.pairwise(history.points)] == [
        timedelta(minutes=1)
    ] * (len(history.points) - 1)
    last = history.points[-1]
    assert (last.completed, last.failed, last.dead, last.waiting) == (6, 1, 1, 5)
    assert last.run_p95 == 5.0, "across queues and lanes: the worst"
    assert history.totals["completed"] == 13
    quiet = history.points[-2]
    assert (quiet.completed, quiet.waiting, quiet.run_p95) == (0, None, None)

    mail = await admin.metrics_history("1h", queue="mail")
    assert mail.totals["completed"] == 4
    assert (await admin.metrics_history("72h")).totals["completed"] == 113
    daily = await admin.metrics_history("7d")
    assert daily.resolution == "hour" and daily.totals["completed"] == 0


async def test_history_refuses_bad_input_and_respects_scope(admin: Admin, db: Db) -> None:
    add_history(db, 1, "mail", completed=3)
    add_history(db, 1, "sms", completed=2)
    for window in ("soon", "10s", "500d", True, None):
        with pytest.raises(AdminError, match="window"):
            await admin.metrics_history(window)
    with pytest.raises(AdminError, match="queue"):
        await admin.metrics_history("1h", queue="no spaces allowed")
    with pytest.raises(AdminNotFound):
        await admin.metrics_history("1h", queue="nowhere")

    sms_only = admin.scoped(Scope.of(queues=["sms"]))
    assert (await sms_only.metrics_history("1h")).totals["completed"] == 2
    assert (await sms_only.metrics_history("1h")).queues == ["sms"]
    with pytest.raises(AdminNotFound):
        await sms_only.metrics_history("1h", queue="mail")
    with pytest.raises(AdminForbidden, match="tenant"):
        await admin.scoped(Scope.of(tenants=["acme"])).metrics_history("1h")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"metrics.minute_retention": "1h"}, "metrics.minute_retention"),
        ({"metrics.hour_retention": "24h"}, "metrics.hour_retention"),
        ({"metrics.rollup_interval": "2h"}, "metrics.rollup_interval"),
        ({"metrics.rollup_interval": "0s"}, "metrics.rollup_interval"),
        ({"metrics.hour_retention": "forever"}, "metrics.hour_retention"),
    ],
)
def test_bad_metrics_settings_are_refused_naming_the_key(
    settings_factory: Any, overrides: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        settings_factory(**overrides)
