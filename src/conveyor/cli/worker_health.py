"""The health columns of `conveyor admin workers`: what each worker reports about itself
in its heartbeats, in the units an operator reads at a glance."""

from __future__ import annotations

from rich.markup import escape

from conveyor.admin import WorkerInfo
from conveyor.human import byte_size, run_time, span

HEALTH_COLUMNS = ("uptime", "memory", "processed", "failed", "avg time", "notes")
HEALTH_NUMERIC = ("uptime", "memory", "processed", "failed", "avg time")


def health_cells(worker: WorkerInfo) -> tuple[str, ...]:
    notes = []
    if worker.postgres_only:
        notes.append("[yellow]postgres-only[/]")
    if worker.breakers_open:
        notes.append("[red]breaker open:[/] " + escape(",".join(worker.breakers_open)))
    avg = worker.avg_processing_seconds
    return (
        span(worker.uptime_seconds),
        "-" if worker.rss_bytes is None else byte_size(worker.rss_bytes),
        f"{worker.jobs_processed:,}",
        f"[red]{worker.jobs_failed:,}[/]" if worker.jobs_failed else "0",
        "-" if avg is None else run_time(avg),
        " ".join(notes) or "-",
    )
