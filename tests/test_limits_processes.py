"""Global limits across real processes: two queuers and two worker processes keep a rate
(no sliding window holds more starts than the limit) and a concurrency per key (no more
jobs of a key overlap than its limit), and a SIGKILLed worker's slots come back once the
rescuer has given its jobs back."""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from datetime import datetime
from typing import Any

import psycopg

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.limits import Limit, Rate
from conveyor.store.limits import SyncLimits
from conveyor.vocabulary import LIMIT_FROM_ADMIN
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, finished, procs, ran_each_once

__all__ = ["procs"]  # the fixture, shared

Db = psycopg.Connection[Any]


def set_limits(settings: Settings, *limits: Limit) -> None:
    with SyncLimits.open(settings, "test", size=1) as statements:
        statements.write_limits(list(limits), LIMIT_FROM_ADMIN)


def attempts(db: Db) -> list[tuple[Any, datetime, datetime]]:
    """(limit key, start, end) of every finished attempt, on PostgreSQL's clock: the start
    is the claim's now(), the clock the rate ledger uses."""
    return db.execute(
        b"SELECT j.limit_key, l.started, l.finished FROM job_logs l JOIN jobs j ON j.id = l.job_id"
        b" WHERE l.started IS NOT NULL ORDER BY l.started"
    ).fetchall()


def most_in_window(starts: list[datetime], period: float) -> int:
    """The most starts any window (a, a + period] holds."""
    assert starts, "no starts recorded"
    most = 0
    for first, start in enumerate(starts):
        inside = [later for later in starts[first:] if (later - start).total_seconds() < period]
        most = max(most, len(inside))
    return most


def most_overlapping(intervals: list[tuple[datetime, datetime]]) -> int:
    assert intervals, "no intervals recorded"
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = most = 0
    for _, change in events:  # an end sorts before a start at the same instant
        now += change
        most = max(most, now)
    return most


async def test_rate_limit_holds_across_two_queuers_and_two_workers(
    procs: Processes, app: Conveyor, db: Db, settings: Settings
) -> None:
    set_limits(settings, Limit("queue:work", Rate(20, 2.0), None))
    app.tasks.update(recording.app.tasks)
    ids = app.enqueue_many("job", [{"n": n} for n in range(60)])
    procs.queuer()
    procs.queuer()
    procs.worker(concurrency=8)
    procs.worker(concurrency=8)

    await wait_until(lambda: finished(db, len(ids)), timeout=40, message="60 jobs to finish")

    ran_each_once(db, ids)
    starts = [start for _, start, _ in attempts(db)]
    assert len(starts) == len(ids)
    assert most_in_window(starts, 2.0) <= 20
    # 60 starts at 20 per 2 s need three windows: the limit, nothing else, paced them.
    assert (starts[-1] - starts[0]).total_seconds() >= 4.0


async def test_concurrency_per_key_holds_across_workers(
    procs: Processes, app: Conveyor, db: Db, settings: Settings
) -> None:
    set_limits(settings, Limit("key:customer-*", None, 3))
    app.tasks.update(recording.app.tasks)
    ids = []
    for customer in range(4):
        key = f"customer-{customer}"
        ids += app.enqueue_many("job", [{"sleep": 0.2}] * 8, limit_key=key)
    procs.queuer()
    procs.worker(concurrency=8)
    procs.worker(concurrency=8)

    await wait_until(lambda: finished(db, len(ids)), timeout=40, message="32 jobs to finish")

    ran_each_once(db, ids)
    by_key: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for key, start, end in attempts(db):
        by_key[key].append((start, end))
    assert len(by_key) == 4
    for key, intervals in by_key.items():
        assert most_overlapping(intervals) <= 3, key


async def test_a_killed_workers_slots_come_back_after_rescue(
    procs: Processes, app: Conveyor, db: Db, settings: Settings
) -> None:
    set_limits(settings, Limit("key:k", None, 2))
    app.tasks.update(recording.app.tasks)
    holders = app.enqueue_many("job", [{"hang_on_attempts": [1]}] * 2, limit_key="k")
    procs.queuer()
    doomed = procs.worker(concurrency=4)

    def running() -> int:
        row = db.execute(b"SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
        return row[0] if row else 0

    await wait_until(lambda: running() == 2, timeout=30, message="both holders to run")
    waiting = app.enqueue_many("job", [{}] * 4, limit_key="k")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    # The slots are held by a dead worker's jobs: nothing else of the key is dispatched.
    rows = db.execute(b"SELECT status FROM jobs WHERE id = ANY(%s)", (waiting,)).fetchall()
    assert sorted(row[0] for row in rows) == ["queued"] * 4
    procs.worker(concurrency=4)

    ids = holders + waiting
    await wait_until(lambda: finished(db, len(ids)), timeout=40, message="every job to finish")

    statuses = db.execute(b"SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    assert statuses == [("completed", 6)]
    lost = db.execute(b"SELECT count(*) FROM job_logs WHERE status = 'lost'").fetchone()
    assert lost == (2,)
