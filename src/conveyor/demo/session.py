"""One demo session: a fresh scratch namespace, a queuer and workers, sample jobs, live
progress and the summary. The `conveyor demo` command parses options and calls this."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from conveyor.config import Settings
from conveyor.demo import live, report
from conveyor.embedded import DEFAULT_DATA_DIR, Services
from conveyor.errors import ConveyorError
from conveyor.launch import Child, Launcher, reset_namespace, wipe_namespace
from conveyor.store.migrate import migrate
from conveyor.store.tools import SyncTools

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
    # Serve the dashboard on live traffic after the summary (None: when stdin is a terminal).
    web: bool = False
    port: int = live.DEFAULT_PORT


def run_demo(
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
            console.print(f"Enqueued    {options.jobs} jobs in {time.monotonic() - started:.2f} s")
            finished = _watch(console, tools, children, started, options.timeout)
            rows = tools.demo_summary()
        report.print_summary(console, rows, time.monotonic() - started)
        code = report.verdict(console, rows, expected, finished)
        if options.web and finished:
            code = live.serve_until_interrupted(console, launcher, options.port) or code
        return code
    finally:
        if "conveyor.demo.tasks" in sys.modules:
            sys.modules["conveyor.demo.tasks"].app.close()
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
        # Charts and alerts within a minute or so of the dashboard opening, not several:
        # the rollup writes a minute once it has ended and the statement deadline has
        # passed, and the rules look at it at their next evaluation.
        "METRICS__ROLLUP_INTERVAL": "5",
        "ALERTS__EVALUATE_INTERVAL": "5",
        "LIVENESS__DATABASE_DEADLINE": "10",
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
