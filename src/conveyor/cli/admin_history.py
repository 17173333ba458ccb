"""`conveyor admin history`: the stored metrics history in a terminal, as totals and a
sparkline per figure, or as the HTTP API's JSON (docs/metrics-history.md)."""

from __future__ import annotations

import click
from rich.markup import escape

from conveyor.admin.history import COUNTS, WINDOWS, HistoryPoint, downsample
from conveyor.cli.admin import admin
from conveyor.cli.admin_output import console, emit_json, json_option, make_table, run, when
from conveyor.cli.main import State, pass_state

BARS = "▁▂▃▄▅▆▇█"
WIDTH = 60


def sparkline(values: list[float | None]) -> str:
    """One character per value, scaled to the largest; blank where unknown."""
    top = max((value for value in values if value is not None), default=0.0)
    if top <= 0:
        return "".join(" " if value is None else BARS[0] for value in values)
    return "".join(
        " " if value is None else BARS[min(len(BARS) - 1, int(value / top * (len(BARS) - 1)))]
        for value in values
    )


@admin.command()
@json_option
@pass_state
@click.option(
    "--window",
    default="1h",
    show_default=True,
    help=f"How far back: {', '.join(WINDOWS)} (minute points) or longer (hour points).",
)
@click.option("--queue", default=None, help="Only this queue (default: every queue, summed).")
def history(state: State, as_json: bool, window: str, queue: str | None) -> None:
    """Throughput, failures, backlog and latency over a window, from the stored history."""
    result = run(state, lambda a: a.metrics_history(window, queue))
    if as_json:
        return emit_json(result)
    out = console()
    what = escape(queue) if queue else "all queues"
    out.print(
        f"{what}, last {result.window} per {result.resolution}: "
        f"{when(result.since)} to {when(result.until)}"
    )
    if not result.points:
        out.print("no history yet: the leader queuer writes it once a minute")
        return
    points = downsample(result.points, WIDTH)
    table = make_table(None, "figure", "total", "peak", "trend", numeric=("total", "peak"))
    for name in COUNTS:
        total = sum(getattr(p, name) for p in result.points)
        peak = max(getattr(p, name) for p in result.points)
        table.add_row(name, str(total), str(peak), sparkline(series(points, name)))
    for name in ("waiting", "running"):
        known = [v for v in series(result.points, name) if v is not None]
        last, peak_text = (f"{known[-1]:g}", f"{max(known):g}") if known else ("-", "-")
        table.add_row(f"{name} (last)", last, peak_text, sparkline(series(points, name)))
    for name, label in (
        ("run_p95", "run p95"),
        ("wait_p95", "wait p95"),
        ("oldest_wait_seconds", "oldest wait"),
    ):
        known = [v for v in series(result.points, name) if v is not None]
        worst = f"{max(known):.3g}s" if known else "-"
        table.add_row(f"{label} (worst)", "", worst, sparkline(series(points, name)))
    out.print(table)


def series(points: list[HistoryPoint], name: str) -> list[float | None]:
    values: list[float | None] = [getattr(point, name) for point in points]
    return values
