"""A chord over real processes: 100 jobs on two `conveyor worker` processes, one SIGKILLed
while it holds some of them; the callback still runs exactly once, with all 100 results,
released by the transaction that completed the last member."""

from __future__ import annotations

import os
import signal
from typing import Any
from uuid import UUID

import psycopg

from conveyor.app import Conveyor
from conveyor.vocabulary import COMPLETED, LOG_LOST, RUNNING, WAITING
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, open_gate, procs, queue_check, terminal_snapshot

__all__ = ["procs"]  # the fixture, shared

Db = psycopg.Connection[Any]
MEMBERS = 100
# Members from this number on wait for the gate, so the kill lands mid-way. They sit in
# the low lane, which workers pop last: the others all run first.
GATED_FROM = 50
GATED_PRIORITY = 200


def count(db: Db, sql: bytes, *params: Any) -> int:
    row = db.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def completed(db: Db, ids: list[UUID]) -> int:
    sql = b"SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status = %s"
    return count(db, sql, ids, COMPLETED)


def held_on_both_workers(db: Db) -> bool:
    """Every slot of both workers (4 each) is taken."""
    row = db.execute(
        b"SELECT count(*), count(DISTINCT worker_id) FROM jobs WHERE status = %s", (RUNNING,)
    ).fetchone()
    return row == (8, 2)


def heartbeat(db: Db) -> Any:
    return db.execute(b"SELECT max(last_heartbeat) FROM workers").fetchone()


async def test_a_chord_of_100_calls_back_once_with_every_result_despite_a_killed_worker(
    procs: Processes, app: Conveyor, db: Db
) -> None:
    app.tasks.update(recording.app.tasks)
    member, callback = app.tasks["chord_part"], app.tasks["chord_callback"]
    members = [
        member.s({"n": n, "gate": "go"}, priority=GATED_PRIORITY)
        if n >= GATED_FROM
        else member.s({"n": n})
        for n in range(MEMBERS)
    ]
    chord = app.chord(members, callback.s())
    procs.queuer()
    doomed = procs.worker(concurrency=4)
    procs.worker(concurrency=4)

    await wait_until(
        lambda: completed(db, chord.header) >= GATED_FROM and held_on_both_workers(db),
        timeout=60,
        message="members done on both workers and both holding gated ones",
    )
    assert app.get_job(chord.callback).status == WAITING
    os.killpg(doomed.pid, signal.SIGKILL)  # the supervisor and its child, mid-chord
    doomed.wait(10)
    open_gate(db, "go")

    result = await app.await_job(chord.callback, timeout=120)
    assert result == {"count": MEMBERS, "results": list(range(MEMBERS))}
    # The killed worker's members ran again elsewhere; the callback ran once.
    lost = count(
        db,
        b"SELECT count(DISTINCT job_id) FROM job_logs WHERE status = %s AND job_id = ANY(%s)",
        LOG_LOST,
        chord.header,
    )
    assert lost == 4
    executions = count(db, b"SELECT count(*) FROM executions WHERE job_id = %s", chord.callback)
    assert executions == 1
    assert queue_check(db, [*chord.header, chord.callback]) == {"completed": MEMBERS + 1}
    before, beat = terminal_snapshot(db), heartbeat(db)
    await wait_until(lambda: heartbeat(db) > beat, message="another heartbeat of the survivor")
    assert terminal_snapshot(db) == before, "a terminal row changed after the fact"
