"""Encrypted payload fields never appear in clear in PostgreSQL, Redis or admin output."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest
import redis
from cryptography.fernet import Fernet

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import ConfigError, load_settings
from conveyor.store.migrate import migrate
from tests.conftest import Running, wait_until

SECRET = "4111-1111-1111-1111"


def encrypted_settings(settings_factory: Any, *keys: str) -> Any:
    settings = settings_factory(
        **{"encryption.keys": list(keys), "encryption.fields": ["card.number", "ssn"]}
    )
    migrate(settings.database.url, settings.database.schema_name)
    return settings


async def test_fields_are_encrypted_at_rest_and_clear_in_the_handler(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = encrypted_settings(settings_factory, Fernet.generate_key().decode())
    app = Conveyor(settings)
    seen: list[Any] = []

    @app.task(name="charge", queue="billing")
    def charge(payload: dict[str, Any]) -> None:
        seen.append(payload)

    job_id = app.enqueue(charge, {"card": {"number": SECRET, "holder": "Ada"}, "ssn": 123456789})
    stored = db.execute(b"SELECT payload::text FROM jobs").fetchone()
    assert stored is not None and SECRET not in stored[0] and "123456789" not in stored[0]
    assert "Ada" in stored[0], "only the named fields are encrypted"

    running = Running(app)
    running.queuer()
    running.worker(["billing"])
    try:
        await wait_until(lambda: app.get_job(job_id).status == "completed", message="completion")
    finally:
        await running.stop()
    assert seen == [{"card": {"number": SECRET, "holder": "Ada"}, "ssn": 123456789}]

    client = redis.Redis.from_url(settings.redis.url)
    keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}*"))
    assert keys, "the queuer left no keys to inspect (it keeps its epoch)"
    for key in keys:
        kind = client.type(key)
        dumped = client.dump(key) or b""
        assert SECRET.encode() not in dumped, f"{key!r} ({kind!r}) holds the secret"
    client.close()
    async with Admin(settings) as admin:
        detail = await admin.job_detail(job_id)
    assert SECRET not in orjson.dumps(detail, default=str).decode()
    everything = db.execute(b"SELECT string_agg(t::text, '') FROM job_logs t").fetchone()
    assert everything is not None and SECRET not in (everything[0] or "")
    await app.aclose()


async def test_rotated_keys_still_decrypt_and_unknown_keys_fail_clearly(
    settings_factory: Any,
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    writer = Conveyor(encrypted_settings(settings_factory, old))
    writer.task(name="charge", queue="billing")(lambda payload: None)
    rotated = writer.enqueue("charge", {"ssn": 1})
    writer.close()

    app = Conveyor(encrypted_settings(settings_factory, new, old))
    app.task(name="charge", queue="billing")(lambda payload: None)
    fresh = app.enqueue("charge", {"ssn": 2})
    stranger = Conveyor(encrypted_settings(settings_factory, Fernet.generate_key().decode()))
    stranger.task(name="charge", queue="billing")(lambda payload: None)
    running = Running(app)
    running.queuer()
    running.worker(["billing"])
    try:
        await wait_until(lambda: app.get_job(rotated).status == "completed", message="old key")
        await wait_until(lambda: app.get_job(fresh).status == "completed", message="new key")
    finally:
        await running.stop()
    lost = stranger.enqueue("charge", {"ssn": 3})
    running = Running(app)
    running.queuer()
    running.worker(["billing"])
    try:
        await wait_until(lambda: app.get_job(lost).status == "dead", message="undecryptable")
    finally:
        await running.stop()
    assert "cannot decrypt payload field 'ssn'" in (app.get_job(lost).last_error or "")
    for conveyor in (app, stranger):
        await conveyor.aclose()


def test_fields_without_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="no keys are set"):
        load_settings(None, env={}, overrides={"encryption.fields": ["ssn"]})


def _stored_text(db: psycopg.Connection[Any]) -> str:
    """Every error text PostgreSQL holds: jobs.last_error and job_logs message/traceback."""
    row = db.execute(
        b"SELECT coalesce(string_agg(coalesce(last_error, ''), ' '), '') ||"
        b" (SELECT coalesce(string_agg(coalesce(log_message, '') || coalesce(traceback, ''),"
        b" ' '), '') FROM job_logs) FROM jobs"
    ).fetchone()
    assert row is not None
    return str(row[0])


async def test_finding_1_decrypted_values_are_redacted_from_errors(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = encrypted_settings(settings_factory, Fernet.generate_key().decode())
    app = Conveyor(settings)

    @app.task(name="charge", queue="billing", max_attempts=1)
    def charge(payload: dict[str, Any]) -> None:
        int(payload["card"]["number"])  # ValueError quoting the card number

    job_id = app.enqueue(charge, {"card": {"number": SECRET}, "ssn": "078-05-1120"})
    running = Running(app)
    running.queuer()
    running.worker(["billing"])
    try:
        await wait_until(lambda: app.get_job(job_id).status == "dead", message="dead")
    finally:
        await running.stop()
    stored = _stored_text(db)
    assert "invalid literal for int()" in stored, "the error itself is kept"
    assert "[redacted]" in stored
    assert SECRET not in stored and "4111" not in stored
    await app.aclose()


async def test_finding_1_ciphertext_moved_between_jobs_or_fields_does_not_decrypt(
    settings_factory: Any, db: psycopg.Connection[Any]
) -> None:
    settings = encrypted_settings(settings_factory, Fernet.generate_key().decode())
    app = Conveyor(settings)
    seen: list[Any] = []

    @app.task(name="charge", queue="billing", max_attempts=3)
    def charge(payload: dict[str, Any]) -> None:
        seen.append(payload)

    source = app.enqueue(charge, {"ssn": "078-05-1120"})
    other_job = app.enqueue(charge, {"ssn": "000-00-0000"})
    other_field = app.enqueue(charge, {"ssn": "000-00-0000", "card": {"number": "1"}})
    # Someone with write access to the database copies one job's ciphertext elsewhere.
    db.execute(
        b"UPDATE jobs SET payload = jsonb_set(payload, '{ssn}',"
        b" (SELECT payload->'ssn' FROM jobs WHERE id = %(source)s)) WHERE id = %(other)s",
        {"source": source, "other": other_job},
    )
    db.execute(
        b"UPDATE jobs SET payload = jsonb_set(payload, '{card,number}', payload->'ssn')"
        b" WHERE id = %(other)s",
        {"other": other_field},
    )
    running = Running(app)
    running.queuer()
    running.worker(["billing"])
    try:
        for job in (other_job, other_field):
            await wait_until(lambda job=job: app.get_job(job).status == "dead", message="dead")
        await wait_until(lambda: app.get_job(source).status == "completed", message="source")
    finally:
        await running.stop()
    assert seen == [{"ssn": "078-05-1120"}], "a moved ciphertext never reaches a handler"
    for job, field in ((other_job, "ssn"), (other_field, "card.number")):
        record = app.get_job(job)
        assert record.attempt == 1, "a value bound to another job cannot decrypt later either"
        assert f"cannot decrypt payload field {field!r}" in (record.last_error or "")
    assert "078-05-1120" not in _stored_text(db)
    await app.aclose()


def test_finding_1_new_values_are_aes_gcm_and_old_fernet_values_still_decrypt() -> None:
    from uuid import uuid4

    from conveyor.encryption import PayloadCipher

    key = Fernet.generate_key()
    cipher = PayloadCipher([key.decode()], ["ssn"])
    job_id = uuid4()
    sealed = cipher.encrypt({"ssn": "078-05-1120"}, job_id)
    assert sealed["ssn"]["$encrypted"].startswith("v2:")
    assert cipher.decrypt(sealed, job_id) == {"ssn": "078-05-1120"}
    legacy = {"ssn": {"$encrypted": Fernet(key).encrypt(b'"078-05-1120"').decode()}}
    assert cipher.decrypt(legacy, uuid4()) == {"ssn": "078-05-1120"}
