"""`conveyor admin` commands that change things: retry, replay (with an edited payload),
delete, cancel, pause, resume, purge-dead. Without `--yes`, destructive ones only say what
they would do; prune-preview is the dry run of a retention change."""

from __future__ import annotations

from typing import IO

import click

from conveyor.admin.errors import AdminError
from conveyor.admin.models import JobSummary
from conveyor.admin.replay import parse_payload_text
from conveyor.cli.admin import admin
from conveyor.cli.admin_output import (
    actor,
    app_tasks,
    duration_option,
    emit_json,
    json_option,
    report,
    run,
)
from conveyor.cli.main import State, pass_state
from conveyor.vocabulary import RUNNING


@admin.command()
@json_option
@pass_state
@click.argument("job_id", required=False)
@click.option("--dead", is_flag=True, help="Replay dead jobs (all, or --queue / --task).")
@click.option("--queue", "-q", default=None, help="With --dead: only this queue.")
@click.option("--task", default=None, help="With --dead: only this task.")
@click.option("--yes", "-y", is_flag=True, help="With --dead: really replay them.")
def retry(
    state: State,
    as_json: bool,
    job_id: str | None,
    dead: bool,
    queue: str | None,
    task: str | None,
    yes: bool,
) -> None:
    """Run a job again now (attempts reset), or replay the dead-letter queue with --dead.

    Without --yes, --dead only shows how many jobs it would replay."""
    if dead == (job_id is not None):
        raise click.UsageError("give a job id, or --dead to replay dead jobs (not both)")
    if job_id is not None:
        if queue or task:
            raise click.UsageError("--queue and --task go with --dead")
        return report(run(state, lambda a: a.retry(job_id, actor())), as_json)
    result = run(state, lambda a: a.retry_dead(actor(), queue=queue, task=task, dry_run=not yes))
    report(result, as_json, None if yes else "nothing changed: run again with --yes to replay")


@admin.command()
@json_option
@pass_state
@click.argument("job_id")
@click.option("--payload", default=None, help="The new payload, as JSON.")
@click.option(
    "--payload-file",
    type=click.File("rb"),
    default=None,
    help="Read the new payload (JSON) from this file ('-': standard input).",
)
@click.option(
    "--app",
    "app_path",
    default=None,
    help="Your tasks ('package.module:app'), to check the payload against the task's model.",
)
def replay(
    state: State,
    as_json: bool,
    job_id: str,
    payload: str | None,
    payload_file: IO[bytes] | None,
    app_path: str | None,
) -> None:
    """Replay a dead job with an edited payload (attempts reset).

    The payload is checked as an enqueue checks it (JSON, size limit, and the task's model
    with --app); encrypted fields may keep their sealed value or get a new clear one. The
    audit log records the payload before and after, encrypted fields masked."""
    if (payload is None) == (payload_file is None):
        raise click.UsageError("give the new payload with --payload or --payload-file (one)")
    text = payload if payload is not None else payload_file.read()  # type: ignore[union-attr]
    try:
        new_payload = parse_payload_text(text)
    except AdminError as error:
        raise click.BadParameter(str(error), param_hint="--payload") from None
    tasks = app_tasks(app_path)
    result = run(state, lambda a: a.replay_edited(job_id, new_payload, actor()), tasks)
    report(result, as_json)


@admin.command()
@json_option
@pass_state
@click.argument("job_id")
@click.option("--yes", "-y", is_flag=True, help="Really delete it.")
def delete(state: State, as_json: bool, job_id: str, yes: bool) -> None:
    """Delete a job for good (not a running one: cancel it first)."""
    if yes:
        # The CLI holds the database credentials themselves: it already may purge.
        return report(run(state, lambda a: a.delete(job_id, actor(), purge_dead=True)), as_json)
    detail = run(state, lambda a: a.job_detail(job_id))
    if detail.stored_status == RUNNING:
        raise click.ClickException(
            f"job {detail.id} is running: cancel it first (conveyor admin cancel {detail.id})"
        )
    message = (
        f"would delete job {detail.id} ({detail.status}, queue {detail.queue}, task {detail.task})"
    )
    if as_json:
        fields = JobSummary.__dataclass_fields__
        summary = {key: value for key, value in detail.to_dict().items() if key in fields}
        return emit_json(
            {"action": "delete", "dry_run": True, "count": 1, "job": summary, "message": message}
        )
    click.echo(message)
    click.echo("nothing changed: run again with --yes to delete it")


@admin.command()
@json_option
@pass_state
@click.argument("job_id")
def cancel(state: State, as_json: bool, job_id: str) -> None:
    """Cancel a job: a waiting one at once, a running one is asked to stop."""
    report(run(state, lambda a: a.cancel(job_id, actor())), as_json)


@admin.command()
@json_option
@pass_state
@click.argument("queue")
def pause(state: State, as_json: bool, queue: str) -> None:
    """Stop a queue: nothing in it starts until it is resumed."""
    report(run(state, lambda a: a.pause(queue, actor())), as_json)


@admin.command()
@json_option
@pass_state
@click.argument("queue")
def resume(state: State, as_json: bool, queue: str) -> None:
    """Let a paused queue run again."""
    report(run(state, lambda a: a.resume(queue, actor())), as_json)


@admin.command("purge-dead")
@json_option
@pass_state
@click.option("--queue", "-q", default=None, help="Only this queue's dead jobs.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted (the default).")
@click.option("--yes", "-y", is_flag=True, help="Really delete them.")
def purge_dead(state: State, as_json: bool, queue: str | None, dry_run: bool, yes: bool) -> None:
    """Delete dead jobs for good. Without --yes, only counts them."""
    if dry_run and yes:
        raise click.UsageError("give --dry-run or --yes, not both")
    result = run(state, lambda a: a.purge_dead(actor(), queue=queue, dry_run=not yes))
    report(result, as_json, None if yes else "nothing changed: run again with --yes to delete")


@admin.command("prune-preview")
@json_option
@pass_state
@click.option(
    "--retention",
    default=None,
    help="Completed and cancelled jobs older than this, e.g. 1d (maintenance.retention).",
)
@click.option(
    "--dead-retention",
    default=None,
    help="Dead jobs older than this, e.g. 7d (maintenance.dead_retention).",
)
def prune_preview(
    state: State, as_json: bool, retention: str | None, dead_retention: str | None
) -> None:
    """Count the jobs the pruner would delete now with these retentions. Changes nothing.

    Run it before shortening maintenance.retention or dead_retention: the elected queuer
    deletes everything past the new value at its next prune pass."""
    finished_after = duration_option(retention, "--retention")
    dead_after = duration_option(dead_retention, "--dead-retention")
    result = run(state, lambda a: a.prune_preview(finished_after, dead_after))
    report(result, as_json, "nothing changed: this is only a count")
