"""The demo's second act: the dashboard on live sample traffic, until Ctrl-C.

Only for a person at a terminal (or `--web`): a script or CI run ends after the summary,
so `make demo` never hangs an unattended run.
"""

from __future__ import annotations

import contextlib
import importlib
import secrets
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from rich.console import Console

from conveyor.launch import Child, Launcher

WEB_START_TIMEOUT = 60.0
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Dashboard:
    url: str
    token: str


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens there, else any free loopback port."""
    for port in (preferred, 0):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe,
            contextlib.suppress(OSError),
        ):
            probe.bind(("127.0.0.1", port))
            return int(probe.getsockname()[1])
    raise OSError("no free loopback port")


def start_dashboard(launcher: Launcher, port: int) -> Dashboard:
    """Start `conveyor web` with a token made for this run only: it stops working when the
    demo ends, and nothing is written to a configuration file."""
    token = secrets.token_urlsafe(24)
    launcher.conveyor(
        "web", "web", "--host", "127.0.0.1", "--port", str(port),
        WEB__TOKENS=f"demo:admin:{token}",
        WEB__SESSION_SECRET=secrets.token_urlsafe(32),
    )  # fmt: skip
    return Dashboard(f"http://127.0.0.1:{port}/", token)


def wait_until_serving(dashboard: Dashboard, web: Child) -> bool:
    deadline = time.monotonic() + WEB_START_TIMEOUT
    while time.monotonic() < deadline:
        if web.process.poll() is not None:
            return False
        try:
            # A loopback URL this module built; no user input reaches it.
            with urllib.request.urlopen(dashboard.url + "login", timeout=2):  # noqa: S310
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def serve_until_interrupted(
    console: Console, launcher: Launcher, port: int, tick_seconds: float = 1.0
) -> int:
    """Serve the dashboard and keep sample traffic flowing; 0 on Ctrl-C, 1 if a process
    died."""
    dashboard = start_dashboard(launcher, free_port(port))
    web = launcher.children[-1]
    if not wait_until_serving(dashboard, web):
        console.print(f"[red]The dashboard did not start; see {web.log}[/]")
        return 1
    tasks = importlib.import_module("conveyor.demo.tasks")
    console.print()
    console.print(f"[bold]Dashboard[/]   {dashboard.url}")
    console.print(f"[bold]Log in with[/] the token {dashboard.token}  (valid for this run only)")
    console.print(
        "Sample traffic keeps flowing: some jobs slow, about one in twelve failing, and "
        f"the queue {tasks.UNSERVED_QUEUE!r} backing up with no worker to serve it, so "
        "its alerts fire within a couple of minutes. Press Ctrl-C to stop."
    )
    tick = 0
    try:
        while True:
            if launcher.dead():
                dead = ", ".join(child.name for child in launcher.dead())
                console.print(f"[red]The {dead} exited; stopping.[/]")
                return 1
            tasks.enqueue_trickle(tick)
            tick += 1
            time.sleep(tick_seconds)
    except KeyboardInterrupt:
        console.print(f"\nStopped after {tick} s of sample traffic.")
        return 0
