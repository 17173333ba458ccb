"""Shared plumbing of the `conveyor admin` commands: running an admin call, tables,
JSON output, durations, and reporting an action's result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from conveyor.admin import Admin, default_actor
from conveyor.admin.models import JobDetail, Model, plain
from conveyor.cli.main import State
from conveyor.durations import format_duration, parse_duration
from conveyor.errors import ConveyorError, SchemaNotMigrated
from conveyor.tasks import TaskRegistry

T = TypeVar("T")
COLOURS = {
    "green": "green",
    "yellow": "yellow",
    "red": "red",
    "healthy": "green",
    "warning": "yellow",
    "critical": "red",
}
HEALTH_EXIT = {"healthy": 0, "warning": 1, "critical": 2}


def run(
    state: State, operation: Callable[[Admin], Awaitable[T]], tasks: TaskRegistry | None = None
) -> T:
    """Open an Admin for one operation; every failure becomes a one-line ClickException.
    `tasks`: the application's tasks, when the command loaded them (`--app`)."""
    settings = state.settings()

    async def go() -> T:
        async with Admin(settings, pool_size=2, tasks=tasks) as admin:
            return await operation(admin)

    try:
        return asyncio.run(go())
    except SchemaNotMigrated as error:
        raise click.ClickException(f"schema {settings.database.schema_name!r}: {error}") from None
    except ConveyorError as error:
        raise click.ClickException(str(error)) from None


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (the HTTP API's shape) instead of tables.",
    )(command)


def emit_json(data: Any) -> None:
    value = data.to_dict() if isinstance(data, Model) else plain(data)
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def console() -> Console:
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        out.width = max(out.width, 160)
    return out


def make_table(title: str | None, *columns: str, numeric: tuple[str, ...] = ()) -> Table:
    """A compact table; job ids never wrap or shrink (people copy them)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for heading in columns:
        table.add_column(
            heading,
            justify="right" if heading in numeric else "left",
            no_wrap=heading == "id",
            min_width=36 if heading == "id" else len(heading),
            overflow="fold",
        )
    return table


def age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(round(seconds))


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def short_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%m-%d %H:%M:%S")


def percent(fraction: float) -> str:
    return f"{fraction * 100:.0f} %"


def job_labels(detail: JobDetail) -> list[tuple[str, str]]:
    """The job's progress, tags and meta as (label, value) facts; none it does not have."""
    facts: list[tuple[str, str]] = []
    if detail.progress is not None:
        message = f" {detail.progress_message}" if detail.progress_message else ""
        facts.append(
            ("progress", f"{percent(detail.progress)}{message} ({when(detail.progress_at)})")
        )
    if detail.tags:
        facts.append(("tags", ", ".join(detail.tags)))
    if detail.meta:
        facts.append(("meta", orjson.dumps(detail.meta).decode()))
    return facts


def duration_option(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=flag) from None
    if seconds < 0:
        raise click.BadParameter("must not be negative", param_hint=flag)
    return seconds


def actor() -> str:
    return default_actor("cli")


def report(result: Model, as_json: bool, hint: str | None = None) -> None:
    """Print an action's result: its message, a sample of ids, and what to run next."""
    if as_json:
        return emit_json(result)
    data = result.to_dict()
    click.echo(data.get("message", ""))
    sample = (data.get("sample") or [])[:10]
    if sample:
        more = data.get("count", len(sample)) - len(sample)
        click.echo("  " + "\n  ".join(sample) + (f"\n  ... and {more} more" if more > 0 else ""))
    skipped = data.get("skipped") or []
    if skipped:
        click.echo("skipped: " + ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else ""))
    if hint:
        click.echo(hint)


def app_tasks(app_path: str | None) -> dict[str, Any] | None:
    """The tasks of `--app module:app`, to check payloads against their models; None
    without `--app`. An app that does not import is a usage error naming `--app`."""
    if app_path is None:
        return None
    from conveyor.worker.process import load_app

    try:
        return dict(load_app(app_path).tasks)
    except (ImportError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--app") from None
