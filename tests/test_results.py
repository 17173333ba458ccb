"""Job results and waiting for them: what a handler returns is stored with its job (sealed
where encryption applies, size-limited), and `app.wait` / `app.await_job` return it or raise
how the job ended, woken by PostgreSQL's NOTIFY for awaited jobs only."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
import pytest
import redis
from cryptography.fernet import Fernet

from conveyor import (
    ConveyorError,
    JobFailed,
    JobNotFound,
    JobWaitTimeout,
    PayloadError,
    ResultNotStored,
)
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.expiry import Expirer
from conveyor.launch import env_name
from conveyor.maintenance import Rescuer
from conveyor.results import ResultCodec
from conveyor.store import Store
from conveyor.store.waiting import job_end_channel
from conveyor.vocabulary import COMPLETED, LOG_COMPLETED, RUNNING, TERMINAL
from conveyor.worker import completer
from conveyor.worker.outcome import Outcome
from tests.apps import results
from tests.conftest import wait_until
from tests.factories import REDIS_URL, add_job
from tests.processes import Processes

KEY = Fernet.generate_key().decode()
RESULT_SETTINGS: dict[str, Any] = {
    "encryption.keys": [KEY],
    "encryption.fields": ["ssn"],
    "jobs.max_result_bytes": 2048,
}


@pytest.fixture
def results_app(settings: Settings, settings_factory: Any) -> Iterator[Conveyor]:
    """The app of the test process, on the test's (migrated) schema, with the worker's
    encryption key and result limit."""
    application = Conveyor(settings_factory(**RESULT_SETTINGS))
    application.tasks.update(results.app.tasks)
    yield application
    application.close()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


def start_worker(procs: Processes) -> None:
    procs.queuer()
    procs.conveyor(
        "worker",
        "--app",
        "tests.apps.results:app",
        "--queues",
        "results",
        "--concurrency",
        "4",
        name="worker",
        **{
            env_name("encryption.keys"): KEY,
            env_name("encryption.fields"): "ssn",
            env_name("jobs.max_result_bytes"): "2048",
        },
    )


def column(db: psycopg.Connection[Any], job_id: UUID, name: str) -> Any:
    row = db.execute(f"SELECT {name} FROM jobs WHERE id = %s".encode(), (job_id,)).fetchone()
    assert row is not None, f"no job {job_id}"
    return row[0]


def last_log(db: psycopg.Connection[Any], job_id: UUID) -> tuple[str, str | None]:
    row = db.execute(
        b"SELECT status, log_message FROM job_logs WHERE job_id = %s ORDER BY id DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    assert row is not None, f"no job_logs row for {job_id}"
    return row[0], row[1]


async def test_results_come_back_from_a_real_worker(
    results_app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app = results_app
    added = app.enqueue("add", {"a": 2, "b": 3, "ssn": "123-45-6789"})
    summed = app.enqueue("add_sync", {"a": 2, "b": 3})
    nothing = app.enqueue("nothing")
    failing = app.enqueue("fails", {"account": "acme"})
    unserialisable = app.enqueue("unserialisable")
    oversized = app.enqueue("oversized", {"chars": 5000})
    start_worker(procs)

    expected = {"sum": 5, "ssn": "123-45-6789", "items": [1, "two"]}
    assert await asyncio.to_thread(app.wait, added, 60) == expected
    assert await app.await_job(summed, timeout=60) == 5
    assert await app.await_job(nothing, timeout=60) is None

    with pytest.raises(JobFailed) as failed:
        await app.await_job(failing, timeout=60)
    assert (failed.value.status, failed.value.attempts, failed.value.max_attempts) == ("dead", 2, 2)
    assert failed.value.error is not None
    assert failed.value.error.startswith("ValueError: no such account: acme")

    # Not kept, not retried, not lost: the job completed once, and every reader learns why
    # it has no result.
    with pytest.raises(ResultNotStored, match="not JSON-serialisable") as dropped:
        await app.await_job(unserialisable, timeout=60)
    assert dropped.value.status == COMPLETED
    with pytest.raises(ResultNotStored, match=r"5002 bytes as JSON, over jobs.max_result_bytes"):
        await app.await_job(oversized, timeout=60)
    for job_id in (unserialisable, oversized):
        assert column(db, job_id, "status") == COMPLETED
        assert column(db, job_id, "attempt") == 1
        assert column(db, job_id, "result") is None
        assert column(db, job_id, "failed") is None, "a completed job is not a failed one"
        status, message = last_log(db, job_id)
        assert status == COMPLETED and message is not None
        assert message.startswith("result not stored: ")
        assert app.get_job(job_id).result_error == message
    assert "completed, but result not stored" in procs.logs()

    # The encrypted field is sealed in the stored result, bound to this job's result.
    stored = column(db, added, "result::text")
    assert "123-45-6789" not in stored and "$encrypted" in stored
    assert column(db, added, "result")["sum"] == 5, "only the listed field is sealed"
    assert app.get_job(added).result == expected
    assert app.get_job(failing).result is None
    # A job that has ended is answered by the first read, without waiting at all.
    assert await app.await_job(added, timeout=0) == expected


async def test_a_wait_sleeps_until_the_job_ends_and_is_woken_by_its_notification(
    results_app: Conveyor,
    procs: Processes,
    db: psycopg.Connection[Any],
    namespace: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = results_app
    release = f"{namespace[1]}release"
    job = app.enqueue("released", {"key": release})
    start_worker(procs)
    await wait_until(lambda: column(db, job, "status") == RUNNING, timeout=60, message="a start")

    with pytest.raises(JobWaitTimeout, match="goes on"):
        await app.await_job(job, timeout=0.1)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(app.wait, job, 0.1)
    assert column(db, job, "status") == RUNNING, "a wait that gave up leaves the job alone"

    caplog.set_level(logging.DEBUG, logger="conveyor.client")
    caplog.clear()
    waiting = asyncio.create_task(app.await_job(job, timeout=60))

    def waiter_asleep() -> bool:
        # Its first read is logged after its LISTEN: from then on the end cannot be missed.
        # (Counting idle waiter sessions in pg_stat_activity also counted the two waits
        # above, whose backends can linger there for a moment after they disconnect.)
        return any(
            record.getMessage() == f"waiting for job {job}: read it before waiting: running"
            for record in caplog.records
        )

    await wait_until(waiter_asleep, message="the waiter to sleep")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.rpush(release, "go")
    finally:
        client.close()
    assert await waiting == {"released": "yes"}
    reads = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith(f"waiting for job {job}: ")
    ]
    # One read before sleeping, one on the notification: nothing polls in between.
    assert reads == [
        f"waiting for job {job}: read it before waiting: running",
        f"waiting for job {job}: read it on its notification: completed",
    ]


async def test_every_end_wakes_its_waiter_and_unawaited_jobs_are_never_announced(
    results_app: Conveyor,
    db: psycopg.Connection[Any],
    settings: Settings,
    settings_factory: Any,
    store: Store,
) -> None:
    app = results_app

    @app.task(name="later", queue="nowhere")
    def later(payload: Any) -> None:
        return None

    with pytest.raises(JobNotFound):
        await app.await_job(uuid4(), timeout=5)
    for bad in (-1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="timeout must be a number"):
            app.wait(uuid4(), timeout=bad)  # type: ignore[arg-type]
    pooled = Conveyor(settings_factory(**{"database.pooler_mode": "transaction"}))
    with pytest.raises(ConveyorError, match=r"set database\.direct_url"):
        pooled.wait(uuid4())

    listener = psycopg.connect(settings.database.url, autocommit=True)
    listener.execute(f'LISTEN "{job_end_channel(settings.database.schema_name)}"'.encode())
    try:

        async def ends(job_id: UUID, end: Any) -> BaseException:
            waiting = asyncio.create_task(app.await_job(job_id, timeout=60))
            await wait_until(lambda: column(db, job_id, "awaited"), message="the mark")
            await end()
            with pytest.raises((JobFailed, JobNotFound)) as raised:
                await waiting
            return raised.value

        unawaited = later.enqueue(None, delay=3600)
        app.cancel(unawaited)

        cancelled = later.enqueue(None, delay=3600)
        error = await ends(cancelled, lambda: asyncio.to_thread(app.cancel, cancelled, "no more"))
        assert isinstance(error, JobFailed)
        assert (error.status, error.error) == ("cancelled", "no more")

        deleted = later.enqueue(None, delay=3600)

        async def delete() -> None:
            db.execute(b"DELETE FROM jobs WHERE id = %s", (deleted,))

        assert isinstance(await ends(deleted, delete), JobNotFound)

        expiring = later.enqueue(None, expires_in=0.001, delay=3600)

        async def expire() -> None:
            await wait_until(lambda: Expirer(store, settings).run_once(), message="expiry")

        error = await ends(expiring, expire)
        assert isinstance(error, JobFailed)
        assert (error.status, error.error) == ("expired", "not started before its deadline")

        lost = add_job(
            db,
            "q",
            status=RUNNING,
            attempt=3,
            max_attempts=3,
            worker="gone",
            lease_expires_at="2000-01-01T00:00:00Z",
        )

        async def rescue() -> None:
            await Rescuer(store, settings).run_once()

        error = await ends(lost, rescue)
        assert isinstance(error, JobFailed)
        assert (error.status, error.error, error.attempts) == ("dead", "worker lost", 3)

        # Notifications arrive in commit order: the unawaited job's cancel, first of all,
        # would be first if it had sent one.
        heard = [note.payload for note in listener.notifies(timeout=5, stop_after=4)]
        assert heard == [str(cancelled), str(deleted), str(expiring), str(lost)]
    finally:
        listener.close()


def test_a_result_codec_seals_listed_fields_and_refuses_what_postgresql_cannot_store(
    results_app: Conveyor,
) -> None:
    codec = ResultCodec(results_app.cipher, 100)
    job_id, other = uuid4(), uuid4()
    kept = codec.encode({"ssn": "123-45-6789", "n": 1}, job_id, "t")
    assert kept.text is not None and "123-45-6789" not in kept.text and kept.error is None
    stored = orjson.loads(kept.text)
    assert codec.decode(stored, job_id) == {"ssn": "123-45-6789", "n": 1}
    with pytest.raises(PayloadError, match="cannot decrypt result field 'ssn'"):
        codec.decode(stored, other)
    # Sealed for a result: the same value does not open as the payload field of that name.
    with pytest.raises(PayloadError, match="cannot decrypt payload field 'ssn'"):
        results_app.cipher.decrypt(stored, job_id)
    assert codec.encode(None, job_id, "t").text is None
    assert "NUL character" in (codec.encode("a\x00b", job_id, "t").error or "")
    assert "not JSON-serialisable" in (codec.encode({1: 2}, job_id, "t").error or "")
    assert "over jobs.max_result_bytes (100 bytes)" in (
        codec.encode("x" * 200, job_id, "t").error or ""
    )


def test_the_trigger_announces_exactly_the_terminal_states(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        b"SELECT pg_get_triggerdef(oid) FROM pg_trigger"
        b" WHERE tgname = 'jobs_awaited_ended' AND tgrelid = 'jobs'::regclass"
    ).fetchone()
    assert row is not None, "migration 018's trigger is missing"
    assert set(re.findall(r"'(\w+)'", row[0])) == set(TERMINAL)


def test_a_batch_of_outcomes_carries_at_most_16_mib_of_results() -> None:
    writer = completer.Completer(store=None)  # type: ignore[arg-type] - only batches here
    big = "x" * (completer.MAX_BATCH_RESULT_CHARS // 2)
    writer._pending = [Outcome(uuid4(), 1, LOG_COMPLETED, 0.1, result=f'"{big}"') for _ in range(3)]
    writer._pending += [Outcome(uuid4(), 1, LOG_COMPLETED, 0.1) for _ in range(2)]
    assert len(writer._take()) == 1, "two halves and their quotes are over the bound"
    assert len(writer._take()) == 1
    assert len(writer._take()) == 3, "the last big one, and outcomes without a result"
    many = completer.MAX_BATCH + 1
    writer._pending = [Outcome(uuid4(), 1, LOG_COMPLETED, 0.1) for _ in range(many)]
    assert len(writer._take()) == completer.MAX_BATCH
