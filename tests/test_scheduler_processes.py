"""Periodic jobs across real processes: two queuers racing over the same due ticks make
exactly one job per tick, and `conveyor worker` writes its app's schedules at start."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.conftest import wait_until
from tests.factories import add_schedule
from tests.processes import Processes, procs

__all__ = ["procs"]  # the fixture, shared

Db = psycopg.Connection[Any]
SCHEDULES = 40
BACKFILL = 5


async def test_two_queuers_make_exactly_one_job_per_tick(procs: Processes, db: Db) -> None:
    missed = "date_trunc('minute', now()) - interval '30 minutes'"
    for number in range(SCHEDULES):
        add_schedule(
            db, f"race-{number}", misfire="backfill", backfill_limit=BACKFILL, next_run_at=missed
        )
    procs.queuer()
    procs.queuer()

    def caught_up() -> bool:
        row = db.execute(b"SELECT count(*) FROM schedules WHERE next_run_at <= now()").fetchone()
        return row is not None and row[0] == 0

    await wait_until(caught_up, timeout=60)
    rows = db.execute(
        b"SELECT s.name, count(j.id), count(DISTINCT j.run_at) FROM schedules s"
        b" LEFT JOIN jobs j ON j.idempotency_key LIKE 'cron:' || s.name || ':%'"
        b" GROUP BY s.name"
    ).fetchall()
    assert len(rows) == SCHEDULES
    for name, jobs, ticks in rows:
        # The five latest missed ticks, plus one on-time tick if a minute turned meanwhile.
        assert jobs == ticks, f"{name}: a tick got {jobs - ticks} extra job(s)"
        assert BACKFILL <= jobs <= BACKFILL + 1, (name, jobs)


async def test_worker_writes_its_apps_schedules_at_start(procs: Processes, db: Db) -> None:
    procs.conveyor("worker", "--app", "tests.apps.periodic:app", name="worker")

    def written() -> list[tuple[Any, ...]]:
        return db.execute(
            b"SELECT name, cron, timezone, queue_name, misfire, payload, source"
            b" FROM schedules ORDER BY name"
        ).fetchall()

    await wait_until(lambda: len(written()) == 2, timeout=60)
    assert written() == [
        ("reports:five-minutes", "*/5 * * * *", "Europe/Paris", "periodic", "skip", {}, "code"),
        (
            "tests.apps.periodic.cleanup",
            "0 4 * * *",
            "UTC",
            "periodic",
            "run_once",
            {"older_than_days": 30},
            "code",
        ),
    ]
