"""`conveyor admin batches` lists the newest batches with their progress; `conveyor admin
batch ID` shows one with its jobs (docs/batches.md)."""

from __future__ import annotations

import click
from rich.markup import escape

from conveyor.admin.batches import DEFAULT_BATCH_JOBS, DEFAULT_BATCHES, BatchSummary
from conveyor.cli.admin import admin
from conveyor.cli.admin_output import console, emit_json, json_option, make_table, run, when
from conveyor.cli.main import State, pass_state

STATE_COLOURS = {"open": "cyan", "running": "yellow", "succeeded": "green", "failed": "red"}


def _state(summary: BatchSummary) -> str:
    return f"[{STATE_COLOURS.get(summary.state, 'white')}]{summary.state}[/]"


def _progress(summary: BatchSummary) -> str:
    return f"{summary.succeeded + summary.failed}/{summary.total}"


@admin.command()
@json_option
@pass_state
@click.option("--limit", type=click.IntRange(1, 1000), default=DEFAULT_BATCHES, show_default=True)
@click.option("--unfinished", is_flag=True, help="Only batches whose callbacks are to come.")
def batches(state: State, as_json: bool, limit: int, unfinished: bool) -> None:
    """The newest batches: state, jobs done of total, succeeded, failed."""
    items = run(state, lambda a: a.batches(limit, unfinished=unfinished))
    if as_json:
        return emit_json(items)
    numeric = ("done", "succeeded", "failed", "pending")
    table = make_table(
        "batches", "id", "description", "state", *numeric, "created", numeric=numeric
    )
    for item in items:
        table.add_row(
            str(item.id),
            escape(item.description or "-"),
            _state(item),
            _progress(item),
            str(item.succeeded),
            str(item.failed),
            str(item.pending),
            when(item.created),
        )
    console().print(table if items else "no batches")


@admin.command("batch")
@json_option
@pass_state
@click.argument("batch_id")
@click.option(
    "--jobs",
    "jobs_limit",
    type=click.IntRange(1, 1000),
    default=DEFAULT_BATCH_JOBS,
    show_default=True,
    help="How many of its jobs to list.",
)
def show_batch(state: State, as_json: bool, batch_id: str, jobs_limit: int) -> None:
    """One batch: its progress, its callbacks and its jobs."""
    detail = run(state, lambda a: a.batch(batch_id, jobs_limit))
    if as_json:
        return emit_json(detail)
    summary = detail.batch
    out = console()
    out.print(f"batch {summary.id} ({escape(summary.description or 'no description')})")
    out.print(
        f"state {_state(summary)}: {_progress(summary)} done, {summary.succeeded} succeeded, "
        f"{summary.failed} failed, {summary.pending} pending"
    )
    out.print(f"created {when(summary.created)}, finished {when(summary.finished)}")
    for name, task, job_id in (
        ("on_complete", summary.on_complete_task, summary.complete_job_id),
        ("on_success", summary.on_success_task, summary.success_job_id),
    ):
        if task is not None:
            out.print(f"{name}: {escape(task)} -> {job_id or 'not enqueued'}")
    table = make_table("jobs", "id", "task", "queue", "status", "attempt", "last error")
    for job in detail.jobs:
        table.add_row(
            str(job.id),
            escape(job.task),
            escape(job.queue),
            job.status,
            f"{job.attempt}/{job.max_attempts}",
            escape((job.last_error or "-").splitlines()[0] if job.last_error else "-"),
        )
    out.print(table)
    if detail.jobs_truncated:
        out.print(f"... more jobs than the {jobs_limit} listed (--jobs)")
