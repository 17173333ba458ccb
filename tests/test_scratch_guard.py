"""`conveyor bench` and `conveyor demo` drop only the scratch schema they created, and never
the configured schema or Redis prefix (issue 19). Real `conveyor` processes on the real
servers: every refusal must leave every row and every key where it was."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.errors import ScratchRefused
from conveyor.lanes_sync import check_scratch_prefix, wipe_scratch_keys
from conveyor.store.migrate import migrate
from conveyor.store.scratch import reset_scratch_schema
from tests.conftest import ADMIN_URL, REDIS_URL, database_url, drop_namespace, make_settings

COMMANDS = ("bench", "demo")


def conveyor(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`conveyor` with only the settings given here: a developer's own would change what
    counts as the configured namespace."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE", "REDIS", "CONVEYOR_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env={**clean, "REDIS_URL": REDIS_URL, "COLUMNS": "120", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def scratch_args(command: str, schema: str, prefix: str) -> list[str]:
    """Arguments that would run quickly if the guard let them through."""
    size = ["--count", "2"] if command == "bench" else ["--jobs", "10"]
    return [command, "--schema", schema, "--prefix", prefix, *size, "--timeout", "30"]


def assert_refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "Error: refusing" in result.stderr, output
    assert "Nothing was changed" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, output


def fill(settings: Settings) -> None:
    """Jobs, a queue and a job log row: what an operator would lose."""
    app = Conveyor(settings)

    @app.task(name="guard.work", queue="guard")
    def work(payload: dict[str, int]) -> None:
        return None

    try:
        ids = app.enqueue_many(work, [{"n": n} for n in range(5)])
        app.cancel(ids[0])
    finally:
        app.close()


def snapshot(url: str, schema: str) -> dict[str, Any]:
    """The schema's comment and the row count of each of its tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            b"SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
        tables = conn.execute(
            b"SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        counts = {}
        for (table,) in tables:
            found = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"'.encode()).fetchone()
            counts[table] = found[0] if found else None
    return {"exists": row is not None, "comment": row and row[0], "rows": counts}


def redis_keys(prefix: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return {key: client.dump(key) or b"" for key in client.scan_iter(match=f"{prefix}*")}
    finally:
        client.close()


def set_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.rpush(f"{prefix}queue:guard", "a-job-id")
        client.set(f"{prefix}conveyor:epoch", "an-epoch")
    finally:
        client.close()


@pytest.fixture
def private_database() -> Iterator[str]:
    """A database of its own, so the test can use the default schema name `conveyor`."""
    name = f"conveyor_guard_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield database_url(name=name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def demo_namespace(test_database: str) -> Iterator[tuple[str, str]]:
    """A schema and prefix both commands accept (the demo insists on 'demo' in them)."""
    tag = uuid.uuid4().hex[:12]
    schema, prefix = f"demo_guard_{tag}", f"demo_guard_{tag}:"
    yield schema, prefix
    drop_namespace(test_database, schema, REDIS_URL, prefix)


def test_bench_and_demo_refuse_the_configured_schema_holding_jobs(
    private_database: str, tmp_path: Path
) -> None:
    prefix = f"guard_{uuid.uuid4().hex[:12]}:"
    settings = make_settings(private_database, "conveyor", prefix)
    migrate(private_database, "conveyor")
    fill(settings)
    before = snapshot(private_database, "conveyor")
    assert before["rows"]["jobs"] == 5 and before["rows"]["job_logs"] == 1

    bench = conveyor(
        tmp_path, *scratch_args("bench", "conveyor", prefix), DATABASE_URL=private_database
    )
    assert_refused(bench, "'conveyor'", "configured database.schema")
    assert snapshot(private_database, "conveyor") == before

    # The demo refuses the name before it connects to anything.
    demo = conveyor(tmp_path, "demo", "--schema", "conveyor", DATABASE_URL=private_database)
    assert demo.returncode == 2 and "--schema" in demo.stderr
    assert "Traceback" not in demo.stderr
    assert snapshot(private_database, "conveyor") == before


@pytest.mark.parametrize("command", COMMANDS)
def test_an_existing_schema_without_the_scratch_mark_is_refused(
    command: str, test_database: str, demo_namespace: tuple[str, str], tmp_path: Path
) -> None:
    schema, prefix = demo_namespace
    settings = make_settings(test_database, schema, prefix)
    migrate(test_database, schema)
    fill(settings)
    set_keys(prefix)
    before, keys = snapshot(test_database, schema), redis_keys(prefix)
    assert before["comment"] is None

    result = conveyor(tmp_path, *scratch_args(command, schema, prefix), DATABASE_URL=test_database)

    assert_refused(result, f"schema {schema!r}", "scratch mark", f'DROP SCHEMA "{schema}" CASCADE')
    assert snapshot(test_database, schema) == before
    assert redis_keys(prefix) == keys


@pytest.mark.parametrize("command", COMMANDS)
def test_the_configured_schema_is_refused_even_with_the_scratch_mark(
    command: str, test_database: str, demo_namespace: tuple[str, str], tmp_path: Path
) -> None:
    # A scratch schema an operator then put in the configuration has become the live one.
    schema, prefix = demo_namespace
    reset_scratch_schema(test_database, schema, configured_schema="conveyor")
    migrate(test_database, schema)
    fill(make_settings(test_database, schema, prefix))
    before = snapshot(test_database, schema)
    assert before["comment"].startswith("conveyor scratch:")

    result = conveyor(
        tmp_path,
        *scratch_args(command, schema, prefix),
        DATABASE_URL=test_database,
        DATABASE__SCHEMA=schema,
    )

    assert_refused(result, "configured database.schema")
    assert snapshot(test_database, schema) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_the_configured_redis_prefix_is_refused_with_its_keys_intact(
    command: str, test_database: str, demo_namespace: tuple[str, str], tmp_path: Path
) -> None:
    schema, prefix = demo_namespace
    set_keys(prefix)
    keys = redis_keys(prefix)
    assert len(keys) == 2

    result = conveyor(
        tmp_path,
        *scratch_args(command, schema, prefix),
        DATABASE_URL=test_database,
        REDIS__KEY_PREFIX=prefix,
    )

    assert_refused(result, "configured redis.key_prefix")
    assert redis_keys(prefix) == keys
    assert not snapshot(test_database, schema)["exists"]  # refused before the schema too


@pytest.mark.timeout(120)
def test_a_scratch_schema_from_an_earlier_bench_run_is_dropped_and_recreated(
    test_database: str, namespace: tuple[str, str], tmp_path: Path
) -> None:
    schema, prefix = namespace
    args = ["bench", "--schema", schema, "--prefix", prefix, "--processes", "1"]
    args += ["--concurrency", "5", "--timeout", "60", "--json"]

    first = conveyor(tmp_path, *args, "--count", "4", DATABASE_URL=test_database)
    assert first.returncode == 0, first.stdout + first.stderr
    earlier = snapshot(test_database, schema)
    assert earlier["comment"].startswith("conveyor scratch:")
    assert earlier["rows"]["jobs"] == 4
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.set(f"{prefix}queue:left-over", "from the earlier run")
    finally:
        client.close()

    second = conveyor(tmp_path, *args, "--count", "2", DATABASE_URL=test_database)

    assert second.returncode == 0, second.stdout + second.stderr
    again = snapshot(test_database, schema)
    assert again["comment"] == earlier["comment"]
    assert again["rows"]["jobs"] == 2  # the earlier run's four jobs went with the schema
    assert f"{prefix}queue:left-over".encode() not in redis_keys(prefix)


@pytest.mark.parametrize(
    ("prefix", "configured"),
    [
        ("", "live:"),  # no prefix at all: every key
        ("live:", "live:"),
        ("live", "live:"),  # a shorter prefix covers the configured one
        ("l", "live:"),
        ("live:queue:", "live:"),  # inside the configured key families
        ("live:conveyor:x", "live:"),
        ("queue:", ""),  # the default prefix is empty: its keys start queue: and conveyor:
        ("q", ""),
        ("conveyor:epoch", ""),
    ],
)
def test_a_prefix_reaching_configured_keys_is_refused(prefix: str, configured: str) -> None:
    with pytest.raises(ScratchRefused):
        check_scratch_prefix(prefix, configured)


@pytest.mark.parametrize(
    ("prefix", "configured"),
    [("bench:", ""), ("demo:", ""), ("bench:", "live:"), ("live:bench:", "live:"), ("x", "")],
)
def test_a_prefix_apart_from_the_configured_keys_is_allowed(prefix: str, configured: str) -> None:
    check_scratch_prefix(prefix, configured)


def test_a_scratch_wipe_treats_glob_characters_literally(namespace: tuple[str, str]) -> None:
    _, base = namespace
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.set(f"{base}a*b:1", "scratch")
        client.set(f"{base}aXb:1", "not scratch")
        deleted = wipe_scratch_keys(REDIS_URL, f"{base}a*b:", configured_prefix="")
        assert deleted == 1
        assert client.get(f"{base}aXb:1") == b"not scratch"
    finally:
        client.close()
