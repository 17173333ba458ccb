"""`conveyor admin ...`: operate the queue from a shell.

Every command calls the admin layer (no SQL or Redis here), prints rich tables for people
and, with `--json`, the same data as the HTTP API for scripts. Destructive commands
without `--yes` change nothing and say what they would do. Errors are one line on stderr
with a non-zero exit status, never a traceback. This module holds the group and the
commands that read; `admin_actions` holds the ones that change things.
"""

from __future__ import annotations

import click
import orjson
from rich.markup import escape
from rich.table import Table

from conveyor.admin.models import JobSummary
from conveyor.cli.admin_output import (
    COLOURS,
    HEALTH_EXIT,
    age,
    console,
    duration_option,
    emit_json,
    job_labels,
    json_option,
    make_table,
    percent,
    run,
    short_time,
    when,
)
from conveyor.cli.main import State, main, pass_state
from conveyor.cli.worker_health import HEALTH_COLUMNS, HEALTH_NUMERIC, health_cells
from conveyor.labels import parse_meta_pairs
from conveyor.vocabulary import HIGH_PRIORITY_MAX, LANES, NORMAL_PRIORITY_MAX


@main.group()
def admin() -> None:
    """Operate the queue: stats, peek, jobs, retry, delete, pause, purge, health."""


# -- reading -------------------------------------------------------------------------------


@admin.command()
@json_option
@pass_state
def stats(state: State, as_json: bool) -> None:
    """Per-queue figures: waiting by lane, running, failures, dead, oldest wait, colour."""
    result = run(state, lambda a: a.stats())
    if as_json:
        return emit_json(result)
    numbers: tuple[str, ...] = (
        "waiting",
        "h/n/l",
        "sched",
        "run",
        "ok/h",
        "fail/h",
        "dead",
        "oldest",
        "target",
    )
    numbers += ("/min", "workers")
    table = make_table(
        f"queues at {when(result.timestamp)}", "queue", "state", *numbers, numeric=numbers
    )
    for q in result.queues:
        lanes = "/".join(str(q.lanes[lane].waiting) for lane in LANES)
        paused = " [bold]paused[/]" if q.paused else ""
        table.add_row(
            q.name,
            f"[{COLOURS[q.status]}]{q.status}[/]{paused}",
            str(q.waiting),
            lanes,
            str(q.scheduled),
            str(q.running),
            str(q.completed_last_hour),
            str(q.failed_last_hour),
            str(q.dead),
            age(q.oldest_waiting_age_seconds),
            age(q.target_seconds),
            f"{q.throughput_per_minute:g}",
            str(q.live_workers),
        )
    out = console()
    out.print(table if result.queues else "no queues yet")
    on_parents = [f"{q.name} {q.awaiting_parents}" for q in result.queues if q.awaiting_parents]
    if on_parents:
        out.print(f"waiting on parents (depends_on): {', '.join(on_parents)}")
    w = result.workers
    out.print(
        f"workers: {w.alive} alive of {w.total} registered, {w.busy} busy of {w.capacity} slots"
    )
    for q in result.queues:
        for reason in q.reasons:
            out.print(f"[{COLOURS[q.status]}]{q.name}[/]: {reason}")


def jobs_table(title: str, items: list[JobSummary], numbered: bool = False) -> Table:
    columns: tuple[str, ...] = ("#",) if numbered else ()
    columns += ("id", "status", "queue", "task", "prio", "try", "created", "last error")
    table = make_table(title, *columns, numeric=("#", "prio", "try"))
    for number, job in enumerate(items, start=1):
        row: tuple[str, ...] = (str(number),) if numbered else ()
        row += (
            str(job.id),
            job.status if job.progress is None else f"{job.status} {percent(job.progress)}",
            job.queue,
            escape(job.task),
            str(job.priority),
            f"{job.attempt}/{job.max_attempts}",
            short_time(job.created),
            escape((job.last_error or "").splitlines()[0][:80] if job.last_error else ""),
        )
        table.add_row(*row)
    return table


@admin.command()
@json_option
@pass_state
@click.option("--queue", "-q", required=True, help="The queue to look into.")
@click.option(
    "--n",
    "-n",
    "count",
    type=int,
    default=20,
    show_default=True,
    help="How many jobs to show (1-1000).",
)
@click.option(
    "--lane",
    type=click.Choice(LANES),
    default=None,
    help=f"Only this lane (priority <={HIGH_PRIORITY_MAX}, <={NORMAL_PRIORITY_MAX}, above).",
)
def peek(state: State, as_json: bool, queue: str, count: int, lane: str | None) -> None:
    """The next jobs of a queue, in the order they would run."""
    items = run(state, lambda a: a.peek(queue, count, lane))
    if as_json:
        return emit_json(items)
    console().print(
        jobs_table(f"next in {queue}", items, numbered=True)
        if items
        else f"nothing waiting in {queue}"
    )


@admin.command()
@json_option
@pass_state
@click.option("--queue", "-q", default=None, help="Only this queue.")
@click.option(
    "--status",
    "-s",
    default=None,
    help="queued, retry_scheduled, dispatched, running, completed, dead, cancelled, expired, "
    "waiting (on parents).",
)
@click.option("--lane", type=click.Choice(LANES), default=None)
@click.option("--older-than", default=None, help="Created at least this long ago (5m, 2h).")
@click.option("--newer-than", default=None, help="Created at most this long ago (1h, 1d).")
@click.option("--text", default=None, help="Find this text inside the payload.")
@click.option("--tenant", default=None, help="Only this tenant's jobs.")
@click.option(
    "--tag", "tags", multiple=True, help="Only jobs carrying this tag (repeat: all of them)."
)
@click.option(
    "--meta",
    "meta_pairs",
    multiple=True,
    help="Only jobs whose meta holds key=value (text) or key:=value (a JSON number, true "
    "or false); repeat for several.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="Jobs per page (1-1000).")
@click.option("--cursor", default=None, help="The next-page cursor a previous call printed.")
def jobs(
    state: State,
    as_json: bool,
    queue: str | None,
    status: str | None,
    lane: str | None,
    older_than: str | None,
    newer_than: str | None,
    text: str | None,
    tenant: str | None,
    tags: tuple[str, ...],
    meta_pairs: tuple[str, ...],
    limit: int,
    cursor: str | None,
) -> None:
    """List jobs, newest first, a page at a time."""
    min_age = duration_option(older_than, "--older-than")
    max_age = duration_option(newer_than, "--newer-than")
    try:
        meta = parse_meta_pairs(meta_pairs) if meta_pairs else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--meta") from None
    page = run(
        state,
        lambda a: a.list_jobs(
            queue=queue,
            status=status,
            lane=lane,
            min_age_seconds=min_age,
            max_age_seconds=max_age,
            text=text,
            after=cursor,
            limit=limit,
            tenant=tenant,
            tags=list(tags) or None,
            meta=meta,
        ),
    )
    if as_json:
        return emit_json(page)
    out = console()
    out.print(jobs_table("jobs", page.items) if page.items else "no jobs match")
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@admin.command()
@json_option
@pass_state
@click.argument("job_id")
def job(state: State, as_json: bool, job_id: str) -> None:
    """One job in full: payload, result, attempts, and why it is waiting."""
    detail = run(state, lambda a: a.job_detail(job_id))
    if as_json:
        return emit_json(detail)
    out = console()
    facts = Table.grid(padding=(0, 2))
    for label, value in (
        ("id", str(detail.id)),
        ("queue", detail.queue),
        ("task", detail.task),
        ("status", detail.status),
        ("priority", f"{detail.priority} ({detail.lane})"),
        ("attempt", f"{detail.attempt} of {detail.max_attempts}"),
        ("created", when(detail.created)),
        ("run at", when(detail.run_at)),
        ("started", when(detail.started)),
        ("worker", detail.worker_id or "-"),
        ("last error", detail.last_error or "-"),
        *job_labels(detail),
    ):
        facts.add_row(f"[bold]{label}[/]", escape(value))
    out.print(facts)
    if detail.why_waiting:
        out.print(f"[bold]why waiting:[/] {escape(detail.why_waiting)}")
    out.print("[bold]payload:[/]")
    out.print(orjson.dumps(detail.payload, option=orjson.OPT_INDENT_2).decode(), markup=False)
    if detail.result is not None:
        cut = " (truncated: the first 64 KiB of its JSON)" if detail.result_truncated else ""
        out.print(f"[bold]result:[/]{cut}")
        shown = detail.result if detail.result_truncated else _indented(detail.result)
        out.print(shown, markup=False)
    if detail.result_error:
        out.print(f"[bold]result:[/] none kept: {escape(detail.result_error)}")
    if detail.parents or detail.children:
        links = make_table("workflow", "relation", "id", "task", "status")
        for relation, linked in (("parent", detail.parents), ("child", detail.children)):
            for link in linked:
                status = link.status or "pruned"
                links.add_row(relation, str(link.id), escape(link.task or "-"), status)
        out.print(links)
    if detail.attempts:
        table = make_table(
            "attempts",
            "#",
            "status",
            "worker",
            "started",
            "finished",
            "seconds",
            "message",
            numeric=("#", "seconds"),
        )
        for attempt in detail.attempts:
            seconds = attempt.duration_seconds
            table.add_row(
                str(attempt.attempt_number),
                attempt.status,
                escape(attempt.worker_id or "-"),
                when(attempt.started),
                when(attempt.finished),
                "-" if seconds is None else f"{seconds:.3f}",
                escape((attempt.message or "")[:80]),
            )
        out.print(table)
    tracebacks = [a for a in detail.attempts if a.traceback]
    if tracebacks:
        out.print(f"[bold]traceback of attempt {tracebacks[-1].attempt_number}:[/]")
        out.print(tracebacks[-1].traceback or "", markup=False)


@admin.command()
@json_option
@pass_state
def workers(state: State, as_json: bool) -> None:
    """Registered workers: queues, heartbeat age, jobs in flight, alive or not, and their
    health (uptime, memory, attempts processed and failed, average run time)."""
    items = run(state, lambda a: a.workers())
    if as_json:
        return emit_json(items)
    table = make_table(
        "workers",
        "worker",
        "alive",
        "queues",
        "slots",
        "busy",
        "heartbeat",
        *HEALTH_COLUMNS,
        numeric=("slots", "busy", *HEALTH_NUMERIC),
    )
    table.columns[0].no_wrap = True  # people copy worker ids, as they do job ids
    for w in items:
        alive = "[green]yes[/]" if w.alive else ("[red]stopped[/]" if w.stopped else "[red]no[/]")
        table.add_row(
            escape(w.id),
            alive,
            ",".join(w.queues),
            str(w.concurrency),
            str(w.jobs_in_flight),
            f"{age(w.heartbeat_age_seconds)} ago",
            *health_cells(w),  # uptime instead of the start time: the table must fit
        )
    console().print(table if items else "no workers registered")


@admin.command()
@json_option
@pass_state
@click.option("--limit", type=int, default=100, show_default=True, help="Entries (1-1000).")
def audit(state: State, as_json: bool, limit: int) -> None:
    """Operator actions, newest first."""
    entries = run(state, lambda a: a.audit_log(limit))
    if as_json:
        return emit_json(entries)
    table = make_table("audit log", "at", "actor", "action", "target", "result", "detail")
    for entry in entries:
        detail = orjson.dumps(entry.detail).decode() if entry.detail else ""
        table.add_row(
            when(entry.at), escape(entry.actor), entry.action, escape(entry.target or "-"),
            entry.result, escape(detail),
        )  # fmt: skip
    console().print(table if entries else "no operator actions recorded")


@admin.command()
@json_option
@pass_state
def health(state: State, as_json: bool) -> None:
    """Redis, PostgreSQL, queues, workers, performance. Exit status: 0 healthy,
    1 warning, 2 critical."""
    report = run(state, lambda a: a.health())
    if as_json:
        emit_json(report)
    else:
        out = console()
        colour = COLOURS[report.overall_status]
        out.print(f"overall: [{colour}]{report.overall_status}[/] at {when(report.timestamp)}")
        why = f" ({report.mode_reason})" if report.mode_reason else ""
        out.print(f"mode: {report.mode}{escape(why)}")
        for name, part in (
            ("redis", report.redis),
            ("database", report.database),
            ("queues", report.queues),
            ("workers", report.workers),
            ("performance", report.performance),
        ):
            message = escape(part.message)
            out.print(f"  {name:<12}[{COLOURS[part.status]}]{part.status:<9}[/] {message}")
    raise SystemExit(HEALTH_EXIT[report.overall_status])


def _indented(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
