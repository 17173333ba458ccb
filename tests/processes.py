"""Real processes for fault tests: workers, queuers and private Redis servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from conveyor.config import Settings
from conveyor.launch import child_environment, settings_env

ROOT = Path(__file__).resolve().parent.parent


FAST_KEYS = (
    "database.pool_size",
    "queuer.poll_interval",
    "worker.heartbeat_interval",
    "worker.dead_after",
    "worker.fetch_timeout",
    "worker.shutdown_grace",
    "worker.lease",
    "maintenance.rescue_interval",
    "maintenance.reconcile_interval",
    "maintenance.reconcile_grace",
)


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a child process load the same settings as the test."""
    env = child_environment({**settings_env(settings, FAST_KEYS), "LOG__LEVEL": "info"})
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Processes:
    """Starts `conveyor` subprocesses in their own process groups; kills them all at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def conveyor(self, *args: str, name: str, **env: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}-{len(self.started)}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *args],
                env=env_for(self.settings, **env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def worker(
        self, queues: str = "work", processes: int = 1, concurrency: int = 4, **env: str
    ) -> subprocess.Popen[bytes]:
        return self.conveyor(
            "worker",
            "--app",
            "tests.apps.recording:app",
            "--queues",
            queues,
            "--processes",
            str(processes),
            "--concurrency",
            str(concurrency),
            name="worker",
            **env,
        )

    def queuer(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return self.conveyor("queuer", *args, name="queuer", **env)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


def children_of(pid: int) -> list[int]:
    """The supervisor's worker processes (its spawned children, not the resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
            if int(fields[1]) == pid and b"spawn_main" in cmdline and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private redis-server on a free port, stopped and restarted by pid."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if client.ping():
                    client.close()
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove a test's Redis keys (by its private prefix) from a shared Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def create_recording_tables(settings: Settings) -> None:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        schema = settings.database.schema_name
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".executions ('
            "job_id uuid NOT NULL, attempt int NOT NULL, pid int NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp());"
            f'CREATE TABLE IF NOT EXISTS "{schema}".effects (job_id uuid PRIMARY KEY);'
            # Named gates a test opens to let waiting handlers finish (tests/apps/recording.py).
            f'CREATE TABLE IF NOT EXISTS "{schema}".gates (name text PRIMARY KEY)'.encode()
        )


def open_gate(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(b"INSERT INTO gates (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))


def queue_check(conn: psycopg.Connection[Any], job_ids: list[Any]) -> dict[str, int]:
    """The queue invariant: every committed enqueue ends completed or dead, and no job ran
    more often than it had attempts. Returns the final status counts."""
    assert job_ids, "no job ids to check"
    rows = conn.execute(
        b"SELECT j.id, j.status, j.attempt, "
        b"(SELECT count(*) FROM executions e WHERE e.job_id = j.id) "
        b"FROM jobs j WHERE j.id = ANY(%s)",
        (job_ids,),
    ).fetchall()
    assert len(rows) == len(job_ids), "a committed job is missing"
    counts: dict[str, int] = {}
    for job_id, status, attempt, executions in rows:
        assert status in ("completed", "dead"), f"job {job_id} ended {status}"
        assert executions <= attempt, f"job {job_id} ran {executions}x in {attempt} attempt(s)"
        counts[status] = counts.get(status, 0) + 1
    return counts


def ran_each_once(conn: psycopg.Connection[Any], job_ids: list[Any]) -> None:
    """Every job completed, and each was executed exactly once (the process tests)."""
    assert queue_check(conn, job_ids) == {"completed": len(job_ids)}
    row = conn.execute(
        b"SELECT count(*), count(DISTINCT job_id), max(c) FROM "
        b"(SELECT job_id, count(*) c FROM executions GROUP BY job_id) e"
    ).fetchone()
    assert row == (len(job_ids), len(job_ids), 1), "every job executed exactly once"


def finished(conn: psycopg.Connection[Any], total: int) -> bool:
    """At least `total` jobs have ended (completed or dead)."""
    row = conn.execute(
        b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')"
    ).fetchone()
    return bool(row and row[0] >= total)


def terminal_snapshot(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        b"SELECT id, status, attempt, lease_token, completed, failed, updated FROM jobs "
        b"WHERE status IN ('completed', 'dead', 'cancelled') ORDER BY id"
    ).fetchall()


@pytest.fixture
def procs(settings: Settings, tmp_path: Path) -> Iterator[Processes]:
    create_recording_tables(settings)
    running = Processes(settings, tmp_path)
    yield running
    running.stop_all()


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


class PostgresServer:
    """A private PostgreSQL cluster on a free port, run as the `postgres` user, stopped by
    pid. Its data survives a stop, so start() after stop() is a restart."""

    def __init__(self) -> None:
        import pwd
        import tempfile

        assert PG_BIN is not None, "check can_run_private_postgres() first"
        self.bin = PG_BIN
        self.port = free_port()
        self.user = pwd.getpwnam("postgres")
        # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 folders.
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._as_postgres(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, args: list[str]) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(200):
            with contextlib.suppress(psycopg.OperationalError):
                psycopg.connect(self.url, connect_timeout=1).close()
                return
            time.sleep(0.05)
        raise RuntimeError("private PostgreSQL did not start")

    def stop(self) -> None:
        """Immediate shutdown of the whole server (SIGQUIT to the postmaster's group)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGQUIT)
            self.process.wait(30)
            self.process = None
            time.sleep(0.2)

    def remove(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def can_run_private_postgres() -> bool:
    import pwd

    if PG_BIN is None or os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True
