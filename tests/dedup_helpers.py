"""What the dedup tests share: reading the jobs back, ageing them, counting outcomes."""

from __future__ import annotations

from typing import Any

import psycopg

from conveyor import EnqueueResult
from conveyor.app import Conveyor
from conveyor.tasks import Task


def noop_task(app: Conveyor) -> Task:
    @app.task(queue="q")
    def noop(payload: Any) -> None:
        return None

    return noop


def jobs(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(b"SELECT id, payload, status FROM jobs ORDER BY created, id").fetchall()


def age(db: psycopg.Connection[Any], seconds: float) -> None:
    """Every job enqueued `seconds` earlier than it was."""
    db.execute(b"UPDATE jobs SET created = created - %s * interval '1 second'", (seconds,))


def outcomes(results: list[EnqueueResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts
