"""`conveyor`: run the processes (migrate, queuer, worker, web) and operate the queue."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import os
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from conveyor.config import ConfigError, Settings, load_settings
from conveyor.errors import SchemaNotMigrated
from conveyor.logs import configure_logging


def package_version() -> str:
    try:
        return version("conveyor-queue")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class State:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        clean = {key: value for key, value in overrides.items() if value is not None}
        try:
            return load_settings(self.config, overrides=clean)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), "--version", prog_name="conveyor")
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    envvar="CONVEYOR_CONFIG",
    help="YAML configuration file (environment variables override it).",
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Conveyor: a durable job queue on PostgreSQL and Redis."""
    # A fatal signal (SIGABRT from a native library, SIGSEGV) must leave a Python stack in
    # the log, not just a return code. Spawned worker processes inherit the variable, so
    # their interpreters enable it before any of our code runs. A stderr that is not a
    # file (click's test runner) has nowhere to write it.
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.enable()
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    ctx.obj = State(config)


@main.command()
@pass_state
def migrate(state: State) -> None:
    """Create or upgrade the schema (safe to run from several processes at once)."""
    from conveyor.admin.schema import migrate_schema

    settings = state.settings()
    try:
        applied = migrate_schema(settings)
    except Exception as error:  # noqa: BLE001 - any failure becomes a one-line message
        raise click.ClickException(f"migration failed: {error}") from None
    for name in applied:
        click.echo(f"applied {name}")
    if not applied:
        click.echo(f"schema {settings.database.schema_name!r} is up to date")


@main.command()
@click.option(
    "--no-maintenance",
    is_flag=True,
    help="Only dispatch; leave rescue, reconcile and prune to other queuers.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /healthz, /readyz and /metrics on this port (0: off).",
)
@pass_state
def queuer(state: State, no_maintenance: bool, health_port: int | None) -> None:
    """Move ready jobs from PostgreSQL into Redis (and run maintenance when elected)."""
    from conveyor import watchdog
    from conveyor.queuer import Queuer
    from conveyor.worker.process import install_loop_policy

    settings = state.settings(**{"health.port": health_port})
    configure_logging(settings)
    install_loop_policy()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watchdog.start(settings, "queuer")
        queuer = await Queuer.open(settings, maintenance=not no_maintenance)
        health = None
        if settings.health.port:
            from conveyor.probes import serve_health

            health = await serve_health(
                settings, settings.health.port, queuer, works_without_redis=True
            )
        try:
            await queuer.run(stop)
        finally:
            if health is not None:
                await health.stop()

    try:
        asyncio.run(serve())
    except SchemaNotMigrated as error:
        # Expected while a deployment's migrate job has not finished: one line, no trace.
        raise click.ClickException(str(error)) from None


@main.command()
@click.option(
    "--app",
    "app_path",
    required=True,
    help="Where your tasks are registered, as 'package.module:app'.",
)
@click.option(
    "--queues",
    "-q",
    default=None,
    help="Comma-separated queues, served in this order (default: worker.queues); "
    "with weights (email:5,warmup:1) each fetch tries a queue first in proportion to its "
    "weight.",
)
@click.option(
    "--concurrency",
    "-n",
    type=click.IntRange(1, 10000),
    default=None,
    help="Jobs run at once per process (worker.count).",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes under one supervisor (worker.processes).",
)
@click.option(
    "--autoscale",
    default=None,
    metavar="MIN:MAX",
    help="Add and remove worker processes between MIN and MAX by load (worker.autoscale); "
    "starts with MIN. Not with --processes.",
)
@click.option(
    "--lane-order",
    type=click.Choice(["queue", "priority"]),
    default=None,
    help="queue: each queue's high, normal, low in turn; priority: every high lane "
    "before any normal lane.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="First port for /healthz, /readyz, /metrics (one per process; 0: off).",
)
@pass_state
def worker(
    state: State,
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    processes: int | None,
    lane_order: str | None,
    health_port: int | None,
    autoscale: str | None = None,
) -> None:
    """Run jobs: pop, claim, execute, report. SIGTERM drains; a second SIGTERM hands back."""
    from conveyor.weights import parse_queue_spec
    from conveyor.worker.process import (
        SettingsMismatch,
        load_tasks,
        sync_limits,
        sync_schedules,
    )
    from conveyor.worker.runner import WorkerOptions
    from conveyor.worker.supervisor import Supervisor

    if autoscale is not None and processes is not None:
        raise click.UsageError(
            "--autoscale and --processes exclude each other: autoscaling starts with MIN "
            "processes and moves between MIN and MAX"
        )
    settings = state.settings(
        **{
            "worker.autoscale": autoscale,
            "worker.count": concurrency,
            "worker.processes": processes,
            "worker.lane_order": lane_order,
            "health.port": health_port,
        }
    )
    configure_logging(settings)
    if state.config is not None:
        # The app is built when its module is imported, here and in every spawned worker
        # process (which inherit this environment): a `Conveyor()` there must read the
        # same file as this command.
        os.environ["CONVEYOR_CONFIG"] = os.path.abspath(state.config)
    try:
        choice = parse_queue_spec(queues.split(",") if queues else settings.worker.queues)
        tasks = load_tasks(app_path, settings)
    except SettingsMismatch as error:
        raise click.ClickException(str(error)) from None
    except (ValueError, ImportError) as error:
        raise click.BadParameter(str(error)) from None
    names = choice.queues
    sync_schedules(app_path)
    sync_limits(app_path)
    if not names:
        names = sorted({task.queue for task in tasks.values()})
    if not names:
        raise click.UsageError("no queues to serve: pass --queues or register tasks")
    options = WorkerOptions(
        queues=names,
        concurrency=settings.worker.count,
        lane_order=settings.worker.lane_order,
        weights=choice.weights,
    )
    supervisor = Supervisor(
        app_path, settings, options, settings.worker.processes, settings.health.port or None
    )
    sys.exit(supervisor.run())


def register_subcommands() -> None:
    """Commands that live in their own modules attach themselves to `main` on import."""
    import importlib

    for module in (
        "admin",
        "admin_actions",
        "admin_history",
        "web",
        "bench",
        "demo",
        "admin_alerts",
        "admin_schedules",
        "admin_limits",
        "admin_batches",
    ):
        importlib.import_module(f"conveyor.cli.{module}")


register_subcommands()
