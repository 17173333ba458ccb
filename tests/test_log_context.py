"""Log lines an operator can search: every line about a job carries its job_id, queue,
task, attempt and worker, including a handler's own `logging` calls, in async handlers
and in sync ones (which run in threads)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.log_context import JobContextFilter, current_job, job_context, job_fields
from conveyor.logs import JsonFormatter, TextFormatter
from conveyor.maintenance import Rescuer
from conveyor.store import Store
from tests.apps import chatty
from tests.conftest import wait_until
from tests.factories import add_job, add_worker
from tests.processes import Processes, finished

FIELDS = ("job_id", "queue", "task", "attempt", "worker")


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing JSON lines through the job-context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContextFilter())
    logger = logging.getLogger("conveyor.test.log_context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_concurrent_tasks_never_see_each_others_job(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    both_inside = asyncio.Barrier(2)

    async def attempt(name: str) -> None:
        with job_context(job_fields(name, "q-" + name, "t-" + name, 1, "w")):
            await both_inside.wait()  # both contexts are set before either logs
            logger.info("%s", name)
            await asyncio.sleep(0)
            # A thread started the way the worker starts sync handlers, from a copy.
            await asyncio.to_thread(logger.info, "%s", name)
            with job_context(job_fields(name + "-inner", attempt=2)):
                logger.info("%s-inner", name)
            logger.info("%s", name)

    await asyncio.gather(attempt("a"), attempt("b"))
    logger.info("outside")
    found = lines(stream)
    assert len(found) == 9
    for line in found[:-1]:
        assert line["job_id"] == line["message"], line
        if line["message"].endswith("-inner"):
            assert line["attempt"] == 2 and "queue" not in line, "the inner context replaces"
        else:
            name = line["message"]
            assert (line["queue"], line["task"], line["attempt"]) == (f"q-{name}", f"t-{name}", 1)
    assert not any(field in found[-1] for field in FIELDS), "a line outside any job"
    assert current_job() is None


async def test_explicit_fields_win_over_the_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    with job_context(job_fields("running", "q", "t", 1, "w")):
        logger.warning("about another job", extra=job_fields("other", "q2"))
    (line,) = lines(stream)
    assert (line["job_id"], line["queue"], line["task"]) == ("other", "q2", "t")


def test_text_lines_end_with_the_job_fields() -> None:
    record = logging.LogRecord("myapp", logging.INFO, __file__, 1, "hello", None, None)
    plain = TextFormatter().format(record)
    assert plain.endswith(f"myapp[{record.process}]: hello")
    job = UUID(int=7)
    with job_context(job_fields(job, "mail", "send", 2, "host:1:ab")):
        JobContextFilter().filter(record)
    text = TextFormatter().format(record)
    assert text.endswith(f"hello [job={job} queue=mail task=send attempt=2 worker=host:1:ab]")


async def test_worker_lines_carry_the_job_in_sync_and_async_handlers(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(chatty.app.tasks)
    said = {
        **{job_id: "say_sync" for job_id in app.enqueue_many("say_sync", [{}] * 3)},
        **{job_id: "say_async" for job_id in app.enqueue_many("say_async", [{}] * 3)},
    }
    failing = app.enqueue("always_fails", {})
    procs.queuer()
    procs.conveyor(
        "worker",
        "--app",
        "tests.apps.chatty:app",
        "--queues",
        "chat",
        "--concurrency",
        "4",
        name="worker",
        LOG__FORMAT="json",
    )
    await wait_until(lambda: finished(db, 7), message="seven jobs to end")
    row = db.execute(b"SELECT id FROM workers").fetchone()
    assert row is not None
    worker_id = row[0]

    def parsed() -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in procs.logs().splitlines() if line.startswith("{")]

    await wait_until(
        lambda: any(line.get("level") == "error" for line in parsed()), message="the dead line"
    )
    entries = parsed()
    hellos = [line for line in entries if line["logger"] == "myapp"]
    assert len(hellos) == 6
    for line in hellos:
        job_id = UUID(line["job_id"])
        assert line["message"] == f"hello from {job_id}", "each line carries its own job"
        assert (line["queue"], line["task"], line["attempt"]) == ("chat", said[job_id], 1)
        assert line["worker"] == worker_id
    assert {line["task"] for line in hellos} == {"say_sync", "say_async"}

    about_failing = [line for line in entries if line.get("job_id") == str(failing)]
    retry = [line for line in about_failing if "retrying" in line["message"]]
    dead = [line for line in about_failing if "is dead" in line["message"]]
    assert len(retry) == 1 and len(dead) == 1
    assert (retry[0]["level"], retry[0]["attempt"], retry[0]["task"]) == (
        "warning",
        1,
        "always_fails",
    )
    assert (dead[0]["level"], dead[0]["attempt"], dead[0]["worker"]) == ("error", 2, worker_id)
    assert retry[0]["queue"] == "chat" and retry[0]["worker"] == worker_id

    outside = [line for line in entries if "job_id" not in line]
    assert outside, "the worker logs lines that are about no job"
    for line in outside:
        assert not any(field in line for field in FIELDS), line


async def test_rescued_attempts_are_logged_with_their_job(
    settings: Settings, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    add_worker(db, "w-gone", ["work"], silent_for=600)
    lost = {
        attempt: add_job(
            db,
            "work",
            task="job",
            status="running",
            attempt=attempt,
            max_attempts=3,
            lease_token=attempt,
            worker_id="w-gone",
            lease_expires_at="2000-01-01T00:00:00Z",
        )
        for attempt in (1, 3)
    }
    store = await Store.open(settings, "test", 1)
    try:
        with caplog.at_level(logging.INFO, logger="conveyor.maintenance"):
            await Rescuer(store, settings).run_once()
    finally:
        await store.close()
    about = {str(getattr(r, "job_id", None)): r for r in caplog.records}
    for attempt, job_id in lost.items():
        record = about[str(job_id)]
        fields = tuple(getattr(record, name) for name in FIELDS)
        assert fields == (job_id, "work", "job", attempt, "w-gone")
    assert about[str(lost[3])].levelno == logging.WARNING, "the last attempt: the job is dead"
    assert "queued to run again" in about[str(lost[1])].getMessage()
