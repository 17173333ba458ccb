"""The `conveyor` command itself: bad configuration is one clear message, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def conveyor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command", [["admin", "stats"], ["worker", "--app", "x:y"], ["queuer"], ["migrate"]]
)
def test_bad_environment_is_reported_once_and_clearly(command: list[str]) -> None:
    result = conveyor(*command, WORKER_COUNT="ten", DATABASE__SCHEMA="Bad Name")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "worker.count (environment variable WORKER_COUNT)" in result.stderr
    assert "database.schema" in result.stderr


def test_version_and_help_need_no_configuration() -> None:
    result = conveyor("--version", WORKER_COUNT="ten")
    assert result.returncode == 0 and "conveyor, version" in result.stdout
    assert conveyor("--help").returncode == 0


def test_unmigrated_schema_says_what_to_do(test_database: str) -> None:
    result = conveyor(
        "admin", "stats", DATABASE_URL=test_database, DATABASE__SCHEMA="never_migrated_here"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "run `conveyor migrate`" in result.stderr
