"""`conveyor admin alerts`: what fires now and, with `--all`, the alert history with the
state of every notification (docs/alerts.md)."""

from __future__ import annotations

import click
from rich.markup import escape

from conveyor.admin.alerts import AlertInfo
from conveyor.cli.admin import admin
from conveyor.cli.admin_output import age, console, emit_json, json_option, make_table, run, when
from conveyor.cli.main import State, pass_state

SEVERITY_COLOURS = {"critical": "red", "warning": "yellow"}
DELIVERY_COLOURS = {
    "delivered": "green",
    "pending": "yellow",
    "retrying": "yellow",
    "gave_up": "red",
}


def deliveries(alert: AlertInfo) -> str:
    """One word per notification: "fired ops delivered", "resolved pd retrying (3)"."""
    parts = []
    for n in alert.notifications:
        tries = f" ({n.attempts})" if n.attempts > 1 else ""
        colour = DELIVERY_COLOURS[n.delivery]
        parts.append(f"{n.transition} {escape(n.receiver)} [{colour}]{n.delivery}[/]{tries}")
    return "\n".join(parts) or "-"


@admin.command()
@json_option
@pass_state
@click.option("--all", "everything", is_flag=True, help="Resolved alerts too, newest first.")
@click.option("--limit", type=int, default=100, show_default=True, help="Alerts (1-1000).")
def alerts(state: State, as_json: bool, everything: bool, limit: int) -> None:
    """Firing alerts (with --all, the history too) and their notifications."""
    items = run(state, lambda a: a.alerts("all" if everything else "firing", limit))
    if as_json:
        return emit_json(items)
    table = make_table(
        "alerts" if everything else "firing alerts",
        "severity",
        "rule",
        "queue",
        "state",
        "since",
        "for",
        "summary",
        "notifications",
    )
    for alert in items:
        colour = SEVERITY_COLOURS.get(alert.severity, "white")
        state_text = "[red]firing[/]" if alert.state == "firing" else "[green]resolved[/]"
        table.add_row(
            f"[{colour}]{alert.severity}[/]",
            alert.rule,
            escape(alert.queue or "(system)"),
            state_text,
            when(alert.fired_at),
            age(alert.duration_seconds),
            escape(alert.summary),
            deliveries(alert),
        )
    console().print(
        table if items else ("no alerts recorded" if everything else "no alert is firing")
    )
