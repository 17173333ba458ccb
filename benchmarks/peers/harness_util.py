"""Process, virtualenv and private-Redis helpers for run.py (standard library only)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # the only address anything here ever connects to
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENVS = HERE / ".venvs"
REQUIREMENTS = HERE / "requirements"
ADAPTERS = HERE / "adapters"
LOGS = HERE / ".logs"
RESULT_PREFIX = "BENCH_RESULT "


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def ensure_venv(peer: str, timeout: float = 1200.0) -> None:
    """Create .venvs/<peer> and install requirements/<peer>.txt unless already done."""
    req = REQUIREMENTS / f"{peer}.txt"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    stamp = VENVS / peer / ".requirements.sha256"
    py = venv_python(peer)
    if py.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    if not py.exists():
        print(f"[{peer}] creating virtualenv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / peer)], check=True, timeout=300)
    print(f"[{peer}] pip install -r {req.relative_to(ROOT)}", flush=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
        check=True,
        timeout=timeout,
    )
    stamp.write_text(digest)


def kill_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL one process group that this harness (or an adapter) started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_recorded_workers(pidfile: Path) -> None:
    """Kill worker groups an adapter recorded, if any survived it (e.g. adapter killed)."""
    if not pidfile.exists():
        return
    for line in pidfile.read_text().split():
        pid = int(line)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:  # still the group leader we started
                kill_group(pid)
    pidfile.unlink(missing_ok=True)


def run_json_command(
    argv: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    log: Path | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Run argv in its own process group; return the JSON object it printed last."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = log or LOGS / "command.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, grace=20.0)  # adapters stop their workers on SIGTERM
            proc.communicate()
            return {"ok": False, "error": f"timed out after {timeout:.0f}s (log: {log})"}
        except BaseException:  # Ctrl-C / SIGTERM of the harness: take the command down too
            kill_group(proc.pid, grace=20.0)
            raise
    text = out.decode(errors="replace")
    for line in reversed(text.splitlines()):
        line = line.strip()
        if prefix and not line.startswith(prefix):
            continue
        line = line[len(prefix) :]
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return dict(json.loads(line))
    with contextlib.suppress(ValueError):
        return dict(json.loads(text))
    return {"ok": False, "error": f"exit code {proc.returncode}, no JSON result (log: {log})"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throw-away redis-server on 127.0.0.1:<free port> with persistence disabled."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench_peer_redis_")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found on PATH")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, self.port), 0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def machine_info() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    for key, argv in (
        ("redis_server", ["redis-server", "--version"]),
        ("postgresql_client", ["psql", "--version"]),
    ):
        exe = shutil.which(argv[0])
        if exe:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                info[key] = subprocess.run(
                    [exe, *argv[1:]], capture_output=True, text=True, timeout=10
                ).stdout.strip()
    return info
