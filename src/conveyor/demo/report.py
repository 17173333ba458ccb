"""What `conveyor demo` shows: the live progress table, the summary and the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from conveyor.vocabulary import COMPLETED, DEAD, DISPATCHED, LANES, QUEUED, RUNNING, TERMINAL

if TYPE_CHECKING:
    from conveyor.demo.tasks import Expected
    from conveyor.store.tools import LaneSummary

QUEUES = ("email-sending", "analytics:daily-aggregate", "warmup:process")
STATUSES = (QUEUED, DISPATCHED, RUNNING, COMPLETED, DEAD)
FINAL = frozenset(TERMINAL)

Counts = dict[str, dict[str, int]]  # queue -> status -> jobs


def all_final(counts: Counts) -> bool:
    return bool(counts) and all(status in FINAL for per in counts.values() for status in per)


def _table(title: str, padding: int = 1) -> Table:
    # Light borders (a space between columns) fit every column in an 80-column terminal.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, padding))


def progress_view(counts: Counts, elapsed: float) -> Group:
    finished = sum(n for per in counts.values() for status, n in per.items() if status in FINAL)
    total = sum(n for per in counts.values() for n in per.values())
    table = _table(f"Progress after {elapsed:.1f} s")
    table.add_column("queue", no_wrap=True)
    for status in STATUSES:
        table.add_column(status, justify="right")
    for queue in QUEUES:
        per = counts.get(queue, {})
        table.add_row(queue, *(str(per.get(status, 0)) for status in STATUSES))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=finished, width=40),
        f"{finished} of {total} jobs finished",
    )
    return Group(table, bar)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _order(row: LaneSummary) -> tuple[int, int]:
    queue = row.queue_name
    return (QUEUES.index(queue) if queue in QUEUES else len(QUEUES), LANES.index(row.lane))


def print_summary(console: Console, rows: list[LaneSummary], elapsed: float) -> None:
    """`rows` are the `demo_summary` query's: one per queue and lane."""
    table = _table(f"Summary, {elapsed:.1f} s after the first enqueue", padding=0)
    table.add_column("queue", no_wrap=True)
    table.add_column("lane", no_wrap=True)
    for name in ("jobs", "completed", "dead", "retried", "wait p50", "p95"):
        table.add_column(name, justify="right", no_wrap=True)
    errors: list[tuple[str, str]] = []
    for row in sorted(rows, key=_order):
        numbers = (str(row.jobs), str(row.completed), str(row.dead), str(row.retried))
        table.add_row(row.queue_name, row.lane, *numbers, _seconds(row.p50), _seconds(row.p95))
        errors.extend((row.queue_name, error) for error in row.errors)
    console.print(table)
    console.print("wait: from enqueue to the start of the first attempt")
    if errors:
        console.print("Why the dead jobs died (each ran out of attempts):")
        for queue, error in errors:
            console.print(f"  [red]{queue}[/]: {escape(error)}", highlight=False)


def verdict(console: Console, rows: list[LaneSummary], expected: Expected, finished: bool) -> int:
    """Say whether the jobs ended as planned; the exit code (0 when they did)."""
    total = sum(row.jobs for row in rows)
    completed = sum(row.completed for row in rows)
    dead = sum(row.dead for row in rows)
    retried = sum(row.retried for row in rows)
    problems = []
    if not finished:
        problems.append("not every job reached a final state")
    if total != expected.total:
        problems.append(f"{total} jobs in the database, {expected.total} enqueued")
    if dead != expected.dead or completed != expected.total - expected.dead:
        problems.append(
            f"{completed} completed and {dead} dead, "
            f"expected {expected.total - expected.dead} and {expected.dead}"
        )
    if retried < expected.retried:
        problems.append(f"{retried} jobs retried, expected at least {expected.retried}")
    for problem in problems:
        console.print(f"[red]FAILED[/] {problem}")
    if problems:
        return 1
    console.print(
        f"[green]OK[/] all {total} jobs finished: {completed} completed, {dead} dead as planned "
        f"(they fail on every attempt), {retried} retried"
    )
    return 0
