"""`conveyor --config f.yaml worker` runs every worker process on that file, even though the
app it imports is built at import time (`Conveyor()`) from whatever it finds then."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest
import yaml

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.launch import setting
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import FAST_KEYS, ROOT, Processes, children_of, queue_check

pytestmark = pytest.mark.fault


def config_file(settings: Settings, keys: tuple[str, ...]) -> dict[str, Any]:
    content: dict[str, Any] = {"log": {"level": "info"}}
    for dotted in keys:
        section, _, key = dotted.partition(".")
        content.setdefault(section, {})[key] = setting(settings, dotted)
    return content


def bare_environment() -> dict[str, str]:
    """No Conveyor setting in the environment: the file is the only source."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def finished(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')").fetchone()
    return row[0] if row else 0


async def test_workers_use_the_schema_named_only_in_the_config_file(
    app: Conveyor, settings: Settings, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    essentials = ("database.url", "database.schema", "redis.url", "redis.key_prefix")
    path = procs.log_dir / "conveyor.yaml"
    path.write_text(yaml.safe_dump(config_file(settings, (*essentials, *FAST_KEYS))))
    ids = app.enqueue_many("job", [{"n": n} for n in range(40)])
    procs.queuer()
    with open(procs.log_dir / "worker-config.log", "wb") as log:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "conveyor", "--config", str(path), "worker"),
                *("--app", "tests.apps.recording:app", "--queues", "work"),
                *("--processes", "2", "--concurrency", "4"),
            ],
            env=bare_environment(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    procs.started.append(worker)
    await wait_until(lambda: finished(db) == 40, timeout=60, message="every job to end")
    assert queue_check(db, ids) == {"completed": 40}
    children = children_of(worker.pid)
    assert len(children) == 2

    def registered() -> list[int]:
        rows = db.execute(b"SELECT pid FROM workers WHERE stopped IS NULL").fetchall()
        return sorted(row[0] for row in rows)

    # One child may have run all 40 jobs before the other finished starting: wait for it
    # to register rather than expect it to have done so by the time the jobs ended.
    await wait_until(lambda: registered() == children, timeout=60, message="both registered")
    ran = db.execute(b"SELECT DISTINCT pid FROM executions").fetchall()
    assert {row[0] for row in ran} <= set(children)
    exists = db.execute(b"SELECT to_regclass('conveyor.workers') IS NOT NULL").fetchone()
    if exists and exists[0]:
        elsewhere = db.execute(
            b"SELECT count(*) FROM conveyor.workers WHERE pid = ANY(%s)", (children,)
        ).fetchone()
        assert elsewhere == (0,), "no worker registered in the default schema"
