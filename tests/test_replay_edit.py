"""Edit and replay in the admin layer: a dead job runs again with a new payload, checked as
an enqueue checks it, and the audit log keeps the payload before and after (with encrypted
fields masked). Every refusal changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pydantic
import pytest
from cryptography.fernet import Fernet

from conveyor.admin import Admin, AdminConflict, AdminError, AdminNotFound
from conveyor.admin.replay import parse_payload_text
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.encryption import PayloadCipher
from conveyor.store.migrate import migrate
from tests.factories import add_job

ACTOR = "test:replay"
SECRET = "4111-1111-1111-1111"


class Invoice(pydantic.BaseModel):
    invoice_id: int
    email: str


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(settings) as instance:
        yield instance


def row(db: psycopg.Connection[Any], job_id: UUID) -> tuple[Any, ...] | None:
    return db.execute(
        b"SELECT status, attempt, payload FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()


def audits(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(b"SELECT actor, action, target, result, detail FROM audit_log").fetchall()


async def test_a_dead_job_runs_again_with_the_new_payload(
    admin: Admin, db: psycopg.Connection[Any]
) -> None:
    job_id = add_job(db, status="dead", attempt=3, payload={"to": "old@example.com"})
    result = await admin.replay_edited(job_id, {"to": "new@example.com"}, actor=ACTOR)
    assert (result.action, result.previous_status, result.status) == (
        "replay_edited",
        "dead",
        "queued",
    )
    assert row(db, job_id) == ("queued", 0, {"to": "new@example.com"})
    logs = db.execute(
        b"SELECT status, attempt_number, log_message FROM job_logs WHERE job_id = %s", (job_id,)
    ).fetchall()
    assert logs == [("retried", 3, f"replayed with an edited payload by {ACTOR}")]
    [(actor, action, target, outcome, detail)] = audits(db)
    assert (actor, action, target, outcome) == (ACTOR, "replay_edited", f"job:{job_id}", "ok")
    assert detail["payload_before"] == {"to": "old@example.com"}
    assert detail["payload_after"] == {"to": "new@example.com"}
    # The edit is made once: a second one finds the job queued.
    with pytest.raises(AdminConflict, match="not dead"):
        await admin.replay_edited(job_id, {"to": "again@example.com"}, actor=ACTOR)
    assert row(db, job_id) == ("queued", 0, {"to": "new@example.com"})


@pytest.mark.parametrize("status", ["queued", "running", "completed", "cancelled"])
async def test_only_dead_jobs_are_edited(
    admin: Admin, db: psycopg.Connection[Any], status: str
) -> None:
    job_id = add_job(db, status=status, attempt=1, payload={"n": 1}, worker="w-1")
    before = row(db, job_id)
    with pytest.raises(AdminConflict, match="only a dead job"):
        await admin.replay_edited(job_id, {"n": 2}, actor=ACTOR)
    assert row(db, job_id) == before
    assert audits(db) == []


async def test_bad_input_changes_nothing(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(**{"jobs.max_payload_bytes": 200})
    migrate(settings.database.url, settings.database.schema_name)
    job_id = add_job(db, status="dead", attempt=3, payload={"n": 1})
    async with Admin(settings) as admin:
        with pytest.raises(AdminError, match="over the 200-byte limit"):
            await admin.replay_edited(job_id, {"text": "x" * 300}, actor=ACTOR)
        with pytest.raises(AdminError, match="not JSON"):
            await admin.replay_edited(job_id, {"when": object()}, actor=ACTOR)
        with pytest.raises(AdminNotFound):
            await admin.replay_edited(UUID(int=7), {"n": 2}, actor=ACTOR)
        with pytest.raises(AdminError, match="job id"):
            await admin.replay_edited("not-an-id", {"n": 2}, actor=ACTOR)
    with pytest.raises(AdminError, match="not valid JSON"):
        parse_payload_text('{"n": ')
    assert parse_payload_text(b'{"n": 2}') == {"n": 2}
    assert row(db, job_id) == ("dead", 3, {"n": 1})
    assert audits(db) == []


async def test_the_task_model_validates_when_the_tasks_are_known(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    app = Conveyor(settings)

    @app.task(name="billing.invoice")
    def invoice(payload: Invoice) -> None:
        return None

    job_id = add_job(db, task="billing.invoice", status="dead", payload={"invoice_id": 1})
    async with Admin(settings, tasks=app.tasks) as admin:
        with pytest.raises(AdminError, match="email"):
            await admin.replay_edited(job_id, {"invoice_id": 1}, actor=ACTOR)
        assert row(db, job_id) == ("dead", 0, {"invoice_id": 1})
        await admin.replay_edited(job_id, {"invoice_id": "2", "email": "a@b.c"}, actor=ACTOR)
    # Stored as the model dumps it, as an enqueue would store it.
    assert row(db, job_id) == ("queued", 0, {"invoice_id": 2, "email": "a@b.c"})
    app.close()


async def test_encrypted_fields_stay_sealed_and_are_masked_in_the_audit_log(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = settings_factory(
        **{
            "encryption.keys": [Fernet.generate_key().decode()],
            "encryption.fields": ["card.number"],
        }
    )
    migrate(settings.database.url, settings.database.schema_name)
    app = Conveyor(settings)

    @app.task(name="charge")
    def charge(payload: dict[str, Any]) -> None:
        return None

    job_id = app.enqueue(charge, {"card": {"number": SECRET, "holder": "Ada"}, "cents": 5})
    other = app.enqueue(charge, {"card": {"number": "5500-0000-0000-0004"}})
    app.close()
    db.execute(b"UPDATE jobs SET status = 'dead', attempt = 3")
    sealed = row(db, job_id)[2]["card"]["number"]  # type: ignore[index]
    sealed_elsewhere = row(db, other)[2]["card"]["number"]  # type: ignore[index]
    cipher = PayloadCipher(settings.encryption.keys, settings.encryption.fields)
    async with Admin(settings) as admin:
        # A sealed value copied from another job would never open: refused.
        with pytest.raises(AdminError, match=r"cannot decrypt payload field 'card\.number'"):
            await admin.replay_edited(
                job_id, {"card": {"number": sealed_elsewhere}, "cents": 6}, actor=ACTOR
            )
        assert row(db, job_id)[:2] == ("dead", 3)  # type: ignore[index]
        # The operator edits what they can read and leaves the sealed value as it is.
        await admin.replay_edited(
            job_id, {"card": {"number": sealed, "holder": "Ada L."}, "cents": 6}, actor=ACTOR
        )
        stored = row(db, job_id)[2]  # type: ignore[index]
        assert SECRET not in orjson.dumps(stored).decode()
        assert cipher.decrypt(stored, job_id) == {
            "card": {"number": SECRET, "holder": "Ada L."},
            "cents": 6,
        }
        # A new clear value is sealed before it is stored.
        db.execute(b"UPDATE jobs SET status = 'dead' WHERE id = %s", (other,))
        await admin.replay_edited(other, {"card": {"number": "4000-0000-0000-0002"}}, actor=ACTOR)
        stored_other = row(db, other)[2]  # type: ignore[index]
        assert "4000-0000-0000-0002" not in orjson.dumps(stored_other).decode()
        assert cipher.decrypt(stored_other, other) == {"card": {"number": "4000-0000-0000-0002"}}
    logged = orjson.dumps([entry[4] for entry in audits(db)]).decode()
    for secret in (SECRET, "4000-0000-0000-0002", sealed["$encrypted"]):
        assert secret not in logged
    first = audits(db)[0][4]
    assert first["payload_before"] == {
        "card": {"number": "[redacted]", "holder": "Ada"},
        "cents": 5,
    }
    assert first["payload_after"] == {
        "card": {"number": "[redacted]", "holder": "Ada L."},
        "cents": 6,
    }
