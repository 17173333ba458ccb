"""The `conveyor` command itself: bad configuration is one clear message, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.processes import Processes, free_port


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


@pytest.mark.parametrize("command", [["admin", "stats"], ["queuer"]])
def test_unmigrated_schema_says_what_to_do(test_database: str, command: list[str]) -> None:
    result = conveyor(
        *command,
        DATABASE_URL=test_database,
        DATABASE__SCHEMA="never_migrated_here",
        REDIS__KEY_PREFIX="never_migrated_here:",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "run `conveyor migrate`" in result.stderr


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


async def test_web_serves_its_probes_on_the_health_port(procs: Processes) -> None:
    """Ready while PostgreSQL and Redis answer (unlike the queuer and the worker, the web
    process has no postgres-only mode)."""
    ports = {name: (free_port(), free_port()) for name in ("up", "no-redis")}
    for name, (web_port, health_port) in ports.items():
        env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"} if name == "no-redis" else {}
        args = ("web", "--port", str(web_port), "--health-port", str(health_port))
        procs.conveyor(*args, name=f"web-{name}", **env)

    def all_live() -> bool:
        return all(probe(port, "/healthz") == (200, "ok\n") for _, port in ports.values())

    await wait_until(all_live, message="/healthz on both health ports")
    up = ports["up"][1]
    status, body = probe(up, "/readyz")
    ready = json.loads(body)
    assert (status, ready["ready"], ready["failing"]) == (200, True, [])
    assert ready["redis"]["index"] == 0  # the primary, no failover
    status, body = probe(up, "/metrics")
    assert status == 200 and "# TYPE" in body
    assert probe(up, "/api/health")[0] == 404, "the admin API stays on the web port"
    status, body = probe(ports["no-redis"][1], "/readyz")
    failing = json.loads(body)["failing"]
    assert status == 503 and len(failing) == 1 and failing[0].startswith("Redis: ")


def test_finding_7_hash_password_reads_the_password_from_stdin_not_argv() -> None:
    from click.testing import CliRunner

    from conveyor.cli.main import main
    from conveyor.web.auth import verify_password

    runner = CliRunner()
    piped = runner.invoke(main, ["hash-password"], input="s3cret passphrase\n")
    assert piped.exit_code == 0, piped.output
    assert verify_password("s3cret passphrase", piped.stdout.strip())
    in_argv = runner.invoke(main, ["hash-password", "--password", "s3cret passphrase"])
    assert in_argv.exit_code == 2, "a password on the command line is refused"
    empty = runner.invoke(main, ["hash-password"], input="\n")
    assert empty.exit_code != 0 and "empty" in empty.output


def _conveyor_children(pid: int) -> list[int]:
    """Processes whose parent is `pid` and that run `-m conveyor` (the bench's queuer and
    worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == pid and b"conveyor" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


async def test_sigterm_stops_the_bench_and_the_processes_it_started(
    test_database: str, tmp_path: Path
) -> None:
    tag = os.urandom(4).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER", "DATABASE"))}
    env.update(DATABASE_URL=test_database)
    bench = subprocess.Popen(
        [
            *(sys.executable, "-m", "conveyor", "bench", "--count", "500000"),
            *("--schema", f"conveyor_bench_{tag}", "--prefix", f"bench_{tag}:"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await wait_until(lambda: len(_conveyor_children(bench.pid)) >= 2, timeout=60)
        started = _conveyor_children(bench.pid)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(60) == 130
        alive = [pid for pid in started if Path(f"/proc/{pid}").exists()]
        await wait_until(lambda: not [p for p in alive if Path(f"/proc/{p}").exists()])
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait(10)
