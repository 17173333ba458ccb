"""`conveyor admin schedules` lists the periodic jobs' schedules; `conveyor admin schedule
pause|resume|trigger NAME` acts on one (docs/scheduling.md)."""

from __future__ import annotations

import click
from rich.markup import escape

from conveyor.cli.admin import admin
from conveyor.cli.admin_output import (
    actor,
    console,
    emit_json,
    json_option,
    make_table,
    report,
    run,
    when,
)
from conveyor.cli.main import State, pass_state


@admin.command()
@json_option
@pass_state
def schedules(state: State, as_json: bool) -> None:
    """Periodic jobs: cron, time zone, next and last run, paused or not."""
    items = run(state, lambda a: a.schedules())
    if as_json:
        return emit_json(items)
    table = make_table(
        "schedules", "name", "task", "cron", "timezone", "queue", "next run", "last run", "state"
    )
    for item in items:
        table.add_row(
            escape(item.name),
            escape(item.task),
            escape(item.cron),
            item.timezone,
            escape(item.queue),
            when(item.next_run_at),
            when(item.last_run_at),
            "[yellow]paused[/]" if item.paused else "[green]active[/]",
        )
    console().print(table if items else "no schedules defined")


@admin.group()
def schedule() -> None:
    """Pause, resume or trigger one schedule."""


@schedule.command("pause")
@json_option
@pass_state
@click.argument("name")
def pause_schedule(state: State, as_json: bool, name: str) -> None:
    """Stop making jobs for schedule NAME (jobs already made are left alone)."""
    report(run(state, lambda a: a.pause_schedule(name, actor())), as_json)


@schedule.command("resume")
@json_option
@pass_state
@click.argument("name")
def resume_schedule(state: State, as_json: bool, name: str) -> None:
    """Resume schedule NAME from its next tick (ticks that fell while paused do not run)."""
    report(run(state, lambda a: a.resume_schedule(name, actor())), as_json)


@schedule.command("trigger")
@json_option
@pass_state
@click.argument("name")
def trigger_schedule(state: State, as_json: bool, name: str) -> None:
    """Enqueue one job of schedule NAME now; its own ticks go on unchanged."""
    report(run(state, lambda a: a.trigger_schedule(name, actor())), as_json)
