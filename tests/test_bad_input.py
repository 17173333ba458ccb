"""Bad input gets a clear error and changes nothing (scenarios 14 and 15)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
import pydantic
import pytest

from conveyor import EnqueueError, PayloadError, PayloadTooLargeError, UnknownTaskError
from conveyor.app import Conveyor
from tests.conftest import Running, wait_until
from tests.factories import add_job, make_settings, new_namespace


class Email(pydantic.BaseModel):
    to: str
    subject: str
    retries: int = 0


def count(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs").fetchone()
    return int(row[0]) if row else -1


@pytest.fixture
def tasks(app: Conveyor) -> Conveyor:
    @app.task(name="send", queue="email-sending")
    def send(payload: Email) -> None:
        return None

    @app.task(name="plain", queue="work")
    def plain(payload: Any) -> None:
        return None

    return app


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda a: a.enqueue("nope", {}), UnknownTaskError, "unknown task 'nope'"),
        (lambda a: a.enqueue("plain", {"when": object()}), PayloadError, "not JSON-serialisable"),
        (
            lambda a: a.enqueue("plain", {"big": "x" * 2_000_000}),
            PayloadTooLargeError,
            "over the limit of 1048576 bytes",
        ),
        (lambda a: a.enqueue("send", {"to": "a@b.c"}), PayloadError, "field 'subject'"),
        (
            lambda a: a.enqueue("send", {"to": "a", "subject": "s", "retries": "many"}),
            PayloadError,
            "field 'retries'",
        ),
        (lambda a: a.enqueue("plain", {}, priority=-1), ValueError, "priority must be"),
        (lambda a: a.enqueue("plain", {}, priority=True), ValueError, "priority must be"),
        (lambda a: a.enqueue("plain", {}, queue="bad queue"), ValueError, "queue name"),
        (lambda a: a.enqueue("plain", {}, queue="x:high"), ValueError, "must not end"),
        (lambda a: a.enqueue("plain", {}, delay=-5), EnqueueError, "delay must be"),
        (lambda a: a.enqueue("plain", {}, max_attempts=0), EnqueueError, "max_attempts"),
        (
            lambda a: a.enqueue("plain", {}, run_at=datetime(2030, 1, 1)),
            EnqueueError,
            "timezone-aware",
        ),
        (lambda a: a.enqueue_many("plain", [{}, {"x": {1, 2}}]), PayloadError, "not JSON"),
        (lambda a: a.get_job("not-a-uuid"), ValueError, "not a job id"),
        (lambda a: a.enqueue("plain", {}, prority=1), TypeError, "unexpected keyword"),
        (lambda a: a.enqueue_many("plain", [{}], idempotency_key="k"), TypeError, "unexpected"),
    ],
)
def test_bad_enqueue_is_refused_and_writes_nothing(
    tasks: Conveyor, db: psycopg.Connection[Any], call: Any, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=None) as raised:
        call(tasks)
    assert fragment in str(raised.value)
    assert count(db) == 0


def test_schema_errors_name_the_field(tasks: Conveyor) -> None:
    with pytest.raises(PayloadError) as raised:
        tasks.enqueue("send", {"to": "x"})
    assert raised.value.field == "subject"


def test_database_down_is_a_clear_error_not_a_false_success(tasks: Conveyor) -> None:
    from conveyor import DatabaseUnavailable

    schema, prefix = new_namespace()
    settings = make_settings(
        "postgresql://postgres@127.0.0.1:1/none", schema, prefix, **{"database.connect_timeout": 1}
    )
    offline = Conveyor(settings)
    offline.tasks.update(tasks.tasks)
    with pytest.raises(DatabaseUnavailable, match="PostgreSQL is unavailable"):
        offline.enqueue("plain", {})
    offline.close()


async def test_bad_jobs_at_run_time_fail_clearly_and_the_worker_goes_on(
    tasks: Conveyor, running: Running, db: psycopg.Connection[Any]
) -> None:
    """A task removed in a deploy; a stored payload that no longer fits its schema."""
    removed = add_job(db, "work", task="retired_task", payload={}, max_attempts=1)
    broken = add_job(db, "email-sending", task="send", payload={"to": 1})
    running.queuer()
    running.worker(["email-sending", "work"])
    await wait_until(lambda: tasks.get_job(removed).status == "dead", message="unknown task")
    await wait_until(lambda: tasks.get_job(broken).status == "dead", message="invalid payload")
    assert "unknown task 'retired_task'" in (tasks.get_job(removed).last_error or "")
    assert tasks.get_job(broken).attempt == 1, "an invalid payload is not retried"
    assert "invalid payload for task send" in (tasks.get_job(broken).last_error or "")
    after = tasks.enqueue("plain", {})
    await wait_until(lambda: tasks.get_job(after).status == "completed", message="next job")
