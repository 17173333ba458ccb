"""`conveyor web` (admin API and dashboard) and `conveyor hash-password`."""

from __future__ import annotations

import asyncio

import click

from conveyor.cli.main import State, main, pass_state
from conveyor.logs import configure_logging


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
@pass_state
def web(
    state: State,
    host: str | None,
    port: int | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Serve the JSON admin API (/api, /api/openapi.json) and the dashboard (/)."""
    from conveyor.web.app import serve

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    settings = state.settings(**{"web.host": host, "web.port": port})
    configure_logging(settings)
    if not settings.web.tokens and not settings.web.users:
        click.echo("warning: no web.tokens or web.users configured: nobody can log in", err=True)
    asyncio.run(serve(settings, settings.web.host, settings.web.port, ssl_certfile, ssl_keyfile))


@main.command("hash-password")
@click.password_option(help="The password (asked twice when not given).")
def hash_password_command(password: str) -> None:
    """Print an scrypt hash for web.users[].password_hash."""
    from conveyor.web.auth import hash_password

    try:
        click.echo(hash_password(password))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
