"""A worker runs on its own settings and takes only the tasks from the app it imports, so
it refuses an app built with settings that would put its jobs somewhere else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.config import load_settings
from conveyor.worker.process import SettingsMismatch, check_app_settings
from tests.processes import ROOT

SECRET_URL = "postgresql://conveyor:hunter2@db.internal:5432/jobs"


def test_a_disagreeing_app_is_named_without_printing_secrets() -> None:
    worker = load_settings(None, env={}, overrides={"database.url": SECRET_URL})
    app = load_settings(
        None,
        env={},
        overrides={"database.schema": "elsewhere", "redis.key_prefix": "x:"},
    )
    with pytest.raises(SettingsMismatch) as caught:
        check_app_settings("m:app", app, worker)
    message = str(caught.value)
    assert "database.url" in message and "hunter2" not in message
    assert "database.schema (app: 'elsewhere', worker: 'conveyor')" in message
    assert "redis.key_prefix (app: 'x:', worker: '')" in message
    check_app_settings("m:app", worker, worker)


def test_the_worker_command_refuses_an_app_pinned_to_another_schema(tmp_path: Path) -> None:
    config = tmp_path / "conveyor.yaml"
    config.write_text("database:\n  schema: from_the_file\n")
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "conveyor", "--config", str(config), "worker"),
            *("--app", "tests.apps.pinned:app", "--queues", "work"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "database.schema (app: 'pinned_elsewhere', worker: 'from_the_file')" in result.stderr
