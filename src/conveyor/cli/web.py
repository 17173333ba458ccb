"""`conveyor web` (admin API and dashboard) and `conveyor hash-password`."""

from __future__ import annotations

import asyncio
import sys

import click

from conveyor.cli.admin_output import app_tasks
from conveyor.cli.main import State, main, pass_state
from conveyor.config import Settings
from conveyor.logs import configure_logging
from conveyor.tasks import TaskRegistry


class _Reachable:
    """The web process does its job whenever it can reach PostgreSQL and Redis, which the
    readiness probe checks itself; it has no loop of its own that could stall."""

    ready = True
    not_ready_reason = ""


@main.command()
@click.option("--host", default=None, help="Address to bind (web.host, default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (web.port).")
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve HTTPS with this certificate (session cookies become Secure).",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The certificate's private key.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve /healthz, /readyz and /metrics on this port, bound to health.host (0: off).",
)
@click.option(
    "--app",
    "app_path",
    default=None,
    help="Your tasks ('package.module:app'): payloads edited before a replay are then "
    "checked against the task's model.",
)
@pass_state
def web(
    state: State,
    host: str | None,
    port: int | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    health_port: int | None,
    app_path: str | None = None,
) -> None:
    """Serve the JSON admin API (/api, /api/openapi.json) and the dashboard (/)."""
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    tasks = app_tasks(app_path)
    settings = state.settings(**{"web.host": host, "web.port": port, "health.port": health_port})
    configure_logging(settings)
    if not settings.web.tokens and not settings.web.users:
        click.echo("warning: no web.tokens or web.users configured: nobody can log in", err=True)
    asyncio.run(_serve(settings, ssl_certfile, ssl_keyfile, tasks))


async def _serve(
    settings: Settings, certfile: str | None, keyfile: str | None, tasks: TaskRegistry | None
) -> None:
    from conveyor import watchdog
    from conveyor.web.app import serve

    watchdog.start(settings, "web")
    health = None
    if settings.health.port:
        from conveyor.probes import serve_health

        # Like every other process, on the admin address: the web port may be public.
        health = await serve_health(settings, settings.health.port, _Reachable())
    try:
        await serve(settings, settings.web.host, settings.web.port, certfile, keyfile, tasks)
    finally:
        if health is not None:
            await health.stop()


@main.command("hash-password")
def hash_password_command() -> None:
    """Print an scrypt hash for web.users[].password_hash. The password is asked for
    (twice, hidden) on a terminal, or read as one line from standard input
    (`... | conveyor hash-password`); never from the command line, which other users
    and the shell history can read."""
    from conveyor.web.auth import hash_password

    stdin = sys.stdin
    if stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = stdin.readline().rstrip("\r\n")
    try:
        click.echo(hash_password(password))
    except ValueError as error:
        raise click.ClickException(str(error)) from None
