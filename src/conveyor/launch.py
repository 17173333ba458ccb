"""Start Conveyor's own processes (queuer, workers) as children, and clean up after them.

Used by `conveyor demo`, `conveyor bench` and the fault tests: a child gets its settings
through the same environment variables an operator would set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.config import Settings
from conveyor.lanes_sync import check_scratch_prefix, wipe_scratch_keys
from conveyor.store.scratch import drop_scratch_schema, reset_scratch_schema

ESSENTIAL = (
    "database.url",
    "database.schema",
    "database.pooler_mode",
    "database.direct_url",
    "redis.url",
    "redis.key_prefix",
)


def env_name(dotted: str) -> str:
    section, _, key = dotted.partition(".")
    if dotted == "database.url":
        return "DATABASE_URL"
    if dotted == "redis.url":
        return "REDIS_URL"
    return f"{section.upper()}__{key.upper()}"


def setting(settings: Settings, dotted: str) -> Any:
    section, _, key = dotted.partition(".")
    values = getattr(settings, section).model_dump(by_alias=True)
    return values[key]


def settings_env(settings: Settings, keys: Iterable[str] = ()) -> dict[str, str]:
    """Environment variables that reproduce `settings` (the essentials plus `keys`)."""
    env = {}
    for dotted in (*ESSENTIAL, *keys):
        value = setting(settings, dotted)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = ",".join(str(item) for item in value)
        else:
            text = "" if value is None else str(value)
        env[env_name(dotted)] = text
    return env


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """Our environment minus anything that would fight the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))}
    env.update(overrides)
    return env


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Launcher:
    """Children in their own sessions: a terminal's Ctrl-C reaches only the caller, which
    then stops them in order, and stopping them never touches the caller."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, cwd: Path | None = None) -> None:
        self.env = child_environment(env)
        self.log_dir = log_dir
        self.cwd = cwd
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def conveyor(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        taken = {child.log.name for child in self.children}
        log_path = self.log_dir / f"{name}.log"
        if log_path.name in taken:
            log_path = self.log_dir / f"{name}-{len(self.children)}.log"
        with open(log_path, "wb") as log:
            # Our own interpreter and module, with arguments we built: no shell involved.
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "conveyor", *args],
                env={**self.env, **extra_env},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(Child(name, process, log_path))
        return process

    def queuer(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        return self.conveyor("queuer", "queuer", *args, **extra_env)

    def worker(
        self,
        app: str,
        queues: Iterable[str],
        processes: int = 1,
        concurrency: int = 10,
        *args: str,
        **extra_env: str,
    ) -> subprocess.Popen[bytes]:
        return self.conveyor(
            "worker", "worker", "--app", app, "--queues", ",".join(queues),
            "--processes", str(processes), "--concurrency", str(concurrency), *args, **extra_env,
        )  # fmt: skip

    def dead(self) -> list[Child]:
        return [child for child in self.children if child.process.poll() is not None]

    def logs(self) -> str:
        return "\n".join(c.log.read_text(errors="replace") for c in self.children if c.log.exists())

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (a drain), then SIGKILL whatever is left of each session.

        Only the lead process is signalled: a supervisor forwards SIGTERM to its children,
        and a child that got it twice would hand its jobs back instead of finishing them.
        """
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        """SIGKILL each child's whole session (a supervisor's worker processes included)."""
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(10)


def reset_namespace(
    database_url: str, schema: str, redis_url: str, prefix: str, configured: Settings
) -> None:
    """Start a scratch run (bench, demo) on a fresh schema, marked as scratch, and no Redis
    keys under `prefix`. Raises ScratchRefused, having changed nothing, unless the schema is
    absent or marked, and neither the schema nor the prefix is the `configured` one."""
    check_scratch_prefix(prefix, configured.redis.key_prefix)
    reset_scratch_schema(database_url, schema, configured.database.schema_name)
    wipe_scratch_keys(redis_url, prefix, configured.redis.key_prefix)


def wipe_namespace(
    database_url: str, schema: str, redis_url: str, prefix: str, configured: Settings
) -> None:
    """Remove a scratch run's schema and Redis keys, under the rules of reset_namespace."""
    check_scratch_prefix(prefix, configured.redis.key_prefix)
    drop_scratch_schema(database_url, schema, configured.database.schema_name)
    wipe_scratch_keys(redis_url, prefix, configured.redis.key_prefix)
