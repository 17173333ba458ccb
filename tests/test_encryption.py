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
