"""`conveyor admin ...` through click's CliRunner, against the test schema.

Each command runs with `--json` and its output is parsed; destructive commands without
`--yes` must change nothing; errors are one line and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import yaml
from click.testing import CliRunner, Result

from conveyor.cli.main import main
from conveyor.config import Settings
from conveyor.ids import uuid7
from tests.factories import add_history, add_job, add_log, add_worker, set_worker_health
from tests.test_admin import audit_rows, status_of

Invoke = Callable[..., Result]


def write_config(path: Path, settings: Settings, **database: Any) -> Path:
    config = {
        "database": {
            "url": settings.database.url,
            "schema": settings.database.schema_name,
            **database,
        },
        "redis": {"url": settings.redis.url, "key_prefix": settings.redis.key_prefix},
        "worker": {"dead_after": settings.worker.dead_after},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def clean_env() -> dict[str, str | None]:
    """Hide variables that would point the CLI at another database or Redis."""
    prefixes = ("DATABASE_", "REDIS_", "CONVEYOR_")
    return {
        name: None
        for name in os.environ
        if name.startswith(prefixes) and not name.startswith("CONVEYOR_TEST_")
    }


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Invoke:
    config = write_config(tmp_path / "conveyor.yaml", settings)
    runner = CliRunner(env=clean_env())

    def invoke(*args: str, config_path: Path = config) -> Result:
        return runner.invoke(main, ["--config", str(config_path), "admin", *args])

    return invoke


def parsed(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_help_lists_every_command(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in (
        "stats",
        "peek",
        "jobs",
        "job",
        "retry",
        "delete",
        "cancel",
        "pause",
        "resume",
        "purge-dead",
        "prune-preview",
        "workers",
        "audit",
        "health",
        "history",
        "schedules",
        "schedule",
        "batches",
        "batch",
    ):
        assert f"  {command} " in result.stdout


def test_history(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    add_history(db, 1, "emails", completed=40, failed=3, run_p95=1.5, waiting=7)
    add_history(db, 2, "reports", completed=2)
    result = cli("history", "--window", "1h")
    assert result.exit_code == 0, result.output
    assert "all queues, last 1h per minute" in result.stdout
    rows = {
        line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()
    }
    assert rows["completed"][:2] == ["42", "40"]
    assert rows["failed"][:2] == ["3", "3"]
    assert "█" in result.stdout
    as_json = json.loads(cli("history", "--queue", "reports", "--json").stdout)
    assert (as_json["queue"], as_json["resolution"]) == ("reports", "minute")
    assert sum(point["completed"] for point in as_json["points"]) == 2
    assert "window" in one_line_error(cli("history", "--window", "soon"))
    assert "nowhere" in one_line_error(cli("history", "--queue", "nowhere"))


def test_stats(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    for priority in (10, 100, 200):
        add_job(db, queue="email-sending", priority=priority)
    add_job(db, queue="email-sending", status="dead")
    data = parsed(cli("stats", "--json"))
    (queue,) = data["queues"]
    assert queue["name"] == "email-sending" and queue["waiting"] == 3 and queue["dead"] == 1
    assert {lane: v["waiting"] for lane, v in queue["lanes"].items()} == {
        "high": 1,
        "normal": 1,
        "low": 1,
    }
    assert queue["status"] == "green" and data["workers"]["alive"] == 0
    table = cli("stats")
    assert table.exit_code == 0 and "email-sending" in table.stdout and "green" in table.stdout


def test_peek(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    low = add_job(db, priority=200)
    high = add_job(db, priority=1)
    data = parsed(cli("peek", "--queue", "q", "--n", "5", "--json"))
    assert [job["id"] for job in data] == [str(high), str(low)]
    assert [job["id"] for job in parsed(cli("peek", "-q", "q", "--lane", "low", "--json"))] == [
        str(low)
    ]
    assert str(high) in cli("peek", "-q", "q").stdout
    assert one_line_error(cli("peek", "-q", "q", "--n", "-3")).endswith("not -3")


def test_jobs_pages_and_filters(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    ids = [add_job(db, status="completed", age=50 - n) for n in range(5)]
    old = add_job(db, status="dead", age=7200)
    first = parsed(cli("jobs", "--limit", "2", "--json"))
    assert [job["id"] for job in first["items"]] == [str(ids[4]), str(ids[3])]
    second = parsed(cli("jobs", "--limit", "2", "--cursor", first["next_cursor"], "--json"))
    assert [job["id"] for job in second["items"]] == [str(ids[2]), str(ids[1])]
    older = parsed(cli("jobs", "--older-than", "1h", "--json"))
    assert [job["id"] for job in older["items"]] == [str(old)]
    dead = parsed(cli("jobs", "--status", "dead", "--queue", "q", "--json"))
    assert [job["id"] for job in dead["items"]] == [str(old)]
    human = cli("jobs", "--limit", "2")
    assert str(ids[4]) in human.stdout and "--cursor" in human.stdout
    usage = cli("jobs", "--older-than", "soon")  # a usage error: click's own format
    assert usage.exit_code == 2 and "Invalid value for --older-than" in usage.stderr
    assert "status must be one of" in one_line_error(cli("jobs", "--status", "failed"))


def test_job_detail(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    job_id = add_job(
        db,
        status="dead",
        attempt=1,
        max_attempts=1,
        error="KeyError: 'x'",
        payload={"campaign": 12},
    )
    add_log(db, job_id, status="dead", message="KeyError: 'x'", traceback="Traceback: ...")
    data = parsed(cli("job", str(job_id), "--json"))
    assert data["payload"] == {"campaign": 12} and data["status"] == "dead"
    assert data["attempts"][0]["message"] == "KeyError: 'x'"
    human = cli("job", str(job_id))
    assert human.exit_code == 0 and '"campaign": 12' in human.stdout
    assert "Traceback: ..." in human.stdout
    waiting = add_job(db, run_in=600)
    assert "Scheduled for later" in parsed(cli("job", str(waiting), "--json"))["why_waiting"]
    assert "no job with id" in one_line_error(cli("job", str(uuid7())))
    assert "not a job id" in one_line_error(cli("job", "banana"))


def test_retry_one_job(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    job_id = add_job(db, status="dead", attempt=3)
    data = parsed(cli("retry", str(job_id), "--json"))
    assert data["changed"] and data["previous_status"] == "dead"
    assert status_of(db, job_id) == ("queued", 0, False)
    actor, action, target, result, _ = audit_rows(db)[0]
    assert actor.startswith("cli:") and (action, target, result) == ("retry", f"job:{job_id}", "ok")
    assert "already queued" in one_line_error(cli("retry", str(job_id)))
    assert cli("retry").exit_code == 2  # neither an id nor --dead
    assert cli("retry", str(job_id), "--dead").exit_code == 2


def test_retry_dead_needs_yes(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    dead = [add_job(db, status="dead", queue="a") for _ in range(3)]
    add_job(db, status="dead", queue="b")
    preview = parsed(cli("retry", "--dead", "--queue", "a", "--json"))
    assert preview["dry_run"] and preview["count"] == 3
    assert set(preview["sample"]) == {str(job_id) for job_id in dead}
    assert all(status_of(db, job_id) == ("dead", 0, False) for job_id in dead)
    human = cli("retry", "--dead")
    assert "would replay 4 dead job(s)" in human.stdout and "--yes" in human.stdout
    assert audit_rows(db) == []
    done = parsed(cli("retry", "--dead", "--queue", "a", "--yes", "--json"))
    assert done["count"] == 3 and not done["dry_run"]
    assert all(status_of(db, job_id) == ("queued", 0, False) for job_id in dead)


def test_delete_needs_yes(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    job_id = add_job(db, status="completed")
    preview = parsed(cli("delete", str(job_id), "--json"))
    assert preview["dry_run"] and preview["job"]["id"] == str(job_id)
    assert "would delete" in cli("delete", str(job_id)).stdout
    assert status_of(db, job_id) is not None and audit_rows(db) == []
    data = parsed(cli("delete", str(job_id), "--yes", "--json"))
    assert data["status"] == "deleted" and status_of(db, job_id) is None
    running = add_job(db, status="running", worker="w")
    assert "cancel it first" in one_line_error(cli("delete", str(running)))
    assert "cancel it first" in one_line_error(cli("delete", str(running), "--yes"))
    assert status_of(db, running) == ("running", 0, False)


def test_cancel(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    waiting = add_job(db)
    assert parsed(cli("cancel", str(waiting), "--json"))["status"] == "cancelled"
    running = add_job(db, status="running", worker="w")
    assert "asked to stop" in cli("cancel", str(running)).stdout
    assert status_of(db, running) == ("running", 0, True)
    assert "nothing to cancel" in one_line_error(cli("cancel", str(waiting)))


def test_pause_and_resume(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    add_job(db, queue="mail", status="dispatched")
    paused = parsed(cli("pause", "mail", "--json"))
    assert paused["changed"] and paused["requeued"] == 1 and paused["redis_synced"]
    assert db.execute(b"SELECT is_active FROM job_queues").fetchone() == (False,)
    assert parsed(cli("stats", "--json"))["queues"][0]["paused"]
    assert "resumed" in cli("resume", "mail").stdout
    assert db.execute(b"SELECT is_active FROM job_queues").fetchone() == (True,)
    assert "unknown queue 'nope'" in one_line_error(cli("pause", "nope"))
    assert "queue name" in one_line_error(cli("pause", "bad name"))


def test_purge_dead_needs_yes(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    dead = [add_job(db, status="dead") for _ in range(2)]
    for args in (("purge-dead", "--json"), ("purge-dead", "--dry-run", "--json")):
        data = parsed(cli(*args))
        assert data["dry_run"] and data["count"] == 2
    assert "would delete 2 dead job(s)" in cli("purge-dead").stdout
    assert all(status_of(db, job_id) for job_id in dead) and audit_rows(db) == []
    assert cli("purge-dead", "--dry-run", "--yes").exit_code == 2
    data = parsed(cli("purge-dead", "--queue", "q", "--yes", "--json"))
    assert data["count"] == 2 and not data["dry_run"]
    assert not any(status_of(db, job_id) for job_id in dead)


def test_prune_preview_counts_what_a_shorter_retention_would_delete(
    cli: Invoke, db: psycopg.Connection[Any]
) -> None:
    old = [add_job(db, status=status) for status in ("completed", "cancelled", "dead", "queued")]
    recent = add_job(db, status="completed")
    db.execute(b"UPDATE jobs SET updated = now() - interval '2 days' WHERE id = ANY(%s)", (old,))

    configured = parsed(cli("prune-preview", "--json"))  # 7 days, dead 30 days
    assert configured["dry_run"] and configured["count"] == 0
    # The waiting job is never pruned, whatever its age; dead jobs keep their own retention.
    assert parsed(cli("prune-preview", "--retention", "1d", "--json"))["count"] == 2
    both = cli("prune-preview", "--retention", "1d", "--dead-retention", "1d")
    assert "would delete 3 job(s) now: 2 completed or cancelled older than 1d, 1 dead" in (
        both.stdout
    )
    assert "nothing changed" in both.stdout
    assert all(status_of(db, job_id) for job_id in [*old, recent]) and audit_rows(db) == []
    assert "--retention" in cli("prune-preview", "--retention", "soon").stderr


def test_workers_and_audit(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    add_worker(db, "w-1", ["q"], in_flight=3)
    add_worker(db, "w-2", ["q"], silent_for=600)
    workers = parsed(cli("workers", "--json"))
    assert [(w["id"], w["alive"]) for w in workers] == [("w-1", True), ("w-2", False)]
    assert "w-1" in cli("workers").stdout
    add_job(db)
    cli("pause", "q")
    entries = parsed(cli("audit", "--limit", "5", "--json"))
    assert [(e["action"], e["target"]) for e in entries] == [("pause", "queue:q")]
    assert "pause" in cli("audit").stdout


def test_health_exit_status_follows_the_report(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    add_job(db, queue="orphan")
    result = cli("health", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == {"healthy": 0, "warning": 1, "critical": 2}[data["overall_status"]]
    assert data["workers"]["queues_without_workers"] == ["orphan"]
    assert data["database"]["status"] == "healthy"
    assert "overall:" in cli("health").stdout
    assert "mode: normal" in cli("health").stdout


def test_unreachable_database_is_one_line(cli: Invoke, settings: Settings, tmp_path: Path) -> None:
    down = write_config(
        tmp_path / "down.yaml",
        settings,
        url="postgresql://postgres@127.0.0.1:1/postgres",
        connect_timeout=1,
    )
    assert "PostgreSQL is unavailable" in one_line_error(cli("stats", config_path=down))
    result = cli("health", "--json", config_path=down)
    assert result.exit_code == 2 and json.loads(result.stdout)["database"]["status"] == "critical"


def test_ids_in_json_are_uuids(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    add_job(db)
    items = parsed(cli("jobs", "--json"))["items"]
    assert items
    for job in items:
        UUID(job["id"])


def test_finding_7_rich_markup_in_stored_text_is_shown_as_is(
    cli: Invoke, db: psycopg.Connection[Any]
) -> None:
    error = "ValueError: closing [/bold] without opening, and [red]not red[/red]"
    job_id = add_job(db, status="dead", attempt=1, error=error, task="t[/]", worker="w[/x]")
    add_log(db, job_id, status="dead", message=error, traceback=error, worker="w[/x]")
    listing = cli("jobs")
    assert listing.exit_code == 0, listing.output
    assert "[/bold]" in listing.stdout and "t[/]" in listing.stdout
    detail = cli("job", str(job_id))
    assert detail.exit_code == 0, detail.output
    assert "[red]not red[/red]" in detail.stdout


def test_jobs_of_one_tenant(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    acme = add_job(db, "shared", tenant="acme")
    add_job(db, "shared", tenant="globex")
    add_job(db, "shared")
    listed = parsed(cli("jobs", "--tenant", "acme", "--json"))
    assert [(job["id"], job["tenant"]) for job in listed["items"]] == [(str(acme), "acme")]
    assert "tenant" in one_line_error(cli("jobs", "--tenant", "not a tenant"))


def test_workers_show_their_health(cli: Invoke, db: psycopg.Connection[Any]) -> None:
    add_worker(db, "w-1", ["q"])
    set_worker_health(db, "w-1", up_for=3720, postgres_only=True, breakers_open=("mail",))
    (worker,) = parsed(cli("workers", "--json"))
    assert (worker["rss_bytes"], worker["jobs_processed"], worker["jobs_failed"]) == (
        123 << 20,
        40,
        4,
    )
    assert worker["uptime_seconds"] >= 3720 and worker["busy_seconds"] == 0.492
    assert worker["postgres_only"] is True and worker["breakers_open"] == ["mail"]
    table = cli("workers").stdout
    for shown in ("1h 2m", "123 MiB", "12.3 ms", "postgres-only", "breaker open: mail"):
        assert shown in table, shown
