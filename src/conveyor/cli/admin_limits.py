"""`conveyor admin limits` lists the global rate and concurrency limits with their use;
`conveyor admin limit set|remove SCOPE` changes one at runtime (docs/scheduling.md)."""

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
)
from conveyor.cli.main import State, pass_state


@admin.command()
@json_option
@pass_state
def limits(state: State, as_json: bool) -> None:
    """Rate and concurrency limits: in flight, starts in the window, jobs held back."""
    items = run(state, lambda a: a.limits())
    if as_json:
        return emit_json(items)
    numeric = ("concurrency", "in flight", "window starts", "waiting")
    table = make_table(
        "limits", "scope", "rate", "concurrency", "source", *numeric[1:], numeric=numeric
    )
    for item in items:
        source = item.source if item.governed_by is None else f"{item.governed_by}"
        table.add_row(
            escape(item.scope),
            item.rate or "-",
            str(item.concurrency) if item.concurrency is not None else "-",
            escape(source),
            str(item.in_flight),
            str(item.window_starts) if item.rate else "-",
            str(item.waiting),
        )
    console().print(table if items else "no limits set")


@admin.group()
def limit() -> None:
    """Set or remove the limit of one scope (queue:NAME, task:NAME, key:KEY or a key pattern)."""


@limit.command("set")
@json_option
@pass_state
@click.argument("scope")
@click.option("--rate", help='Starts per window: "100/s", "20/m", "5/10s".')
@click.option("--concurrency", type=int, help="Jobs dispatched or running at once.")
def set_limit(
    state: State, as_json: bool, scope: str, rate: str | None, concurrency: int | None
) -> None:
    """Set SCOPE's limit now (code and configuration do not overwrite it until removed)."""
    if rate is None and concurrency is None:
        raise click.UsageError("give --rate, --concurrency, or both")
    result = run(state, lambda a: a.set_limit(scope, actor(), rate=rate, concurrency=concurrency))
    report(result, as_json)


@limit.command("remove")
@json_option
@pass_state
@click.argument("scope")
def remove_limit(state: State, as_json: bool, scope: str) -> None:
    """Remove SCOPE's limit (one from code or configuration comes back at their next start)."""
    report(run(state, lambda a: a.remove_limit(scope, actor())), as_json)
