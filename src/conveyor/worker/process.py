"""One worker process: import the user's tasks, run a Worker, turn signals into a drain.

The worker runs on the settings it is given; from the imported app it takes only the
task registry and the middleware. The app was built at import time from whatever it
found then, so it must agree with those settings on where the jobs live and how payloads
are encrypted: the CLI exports `--config` as CONVEYOR_CONFIG before importing, so a plain
`Conveyor()` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from conveyor import watchdog
from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.errors import ConveyorError
from conveyor.middleware import Middleware
from conveyor.tasks import TaskRegistry
from conveyor.worker.runner import Worker, WorkerOptions

log = logging.getLogger("conveyor.worker")

# Settings where the app and the worker must agree: otherwise the worker claims jobs in one
# place while the app (and the handlers using it) enqueue and read in another, or cannot
# decrypt what the app encrypted. Values of the `secret` ones are never printed.
MUST_AGREE = (
    ("database", "url", True),
    ("database", "schema_name", False),
    ("redis", "url", True),
    ("redis", "key_prefix", False),
    ("encryption", "keys", True),
    ("encryption", "fields", False),
)
# Where a difference only changes the defaults of tasks registered on the app.
TASK_DEFAULTS = ("jobs", "retry")


class SettingsMismatch(ValueError):
    """The imported app was built with settings that differ from the worker's."""


def load_app(path: str) -> Conveyor:
    """Import `module:attribute` and check it is a Conveyor app."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--app must look like 'package.module:app', not {path!r}")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute, None)
    if not isinstance(app, Conveyor):
        raise ValueError(f"{path} is {type(app).__name__}, not a Conveyor app")
    return app


def check_app_settings(app_path: str, app: Settings, worker: Settings) -> None:
    """Raise SettingsMismatch naming every essential setting the app disagrees on."""
    differences = []
    for section, key, secret in MUST_AGREE:
        mine, theirs = getattr(getattr(worker, section), key), getattr(getattr(app, section), key)
        if mine != theirs:
            name = f"{section}.{'schema' if key == 'schema_name' else key}"
            differences.append(name if secret else f"{name} (app: {theirs!r}, worker: {mine!r})")
    if differences:
        raise SettingsMismatch(
            f"the app {app_path} was built with settings that differ from this worker's on "
            f"{', '.join(differences)}. Build it with Conveyor() so it reads the same "
            "configuration file and environment, or give both the same settings."
        )
    for section in TASK_DEFAULTS:
        if getattr(app, section) != getattr(worker, section):
            log.warning(
                "the app %s was built with other %s settings than this worker: its tasks "
                "keep the defaults they were registered with",
                app_path,
                section,
            )


def load_checked_app(app_path: str, settings: Settings) -> Conveyor:
    """The app at `app_path`, once its settings are known to agree with the worker's."""
    app = load_app(app_path)
    check_app_settings(app_path, app.settings, settings)
    return app


def load_tasks(app_path: str, settings: Settings) -> TaskRegistry:
    """The task registry of the app at `app_path`, once its settings are known to agree."""
    return load_checked_app(app_path, settings).tasks


def sync_schedules(app_path: str) -> int:
    """Write the app's periodic jobs to the `schedules` table, where the queuers find them.
    An outage is reported, not fatal: the table keeps the definitions last written, and the
    next worker start writes them again."""
    try:
        changed = load_app(app_path).sync_schedules()
    except ConveyorError as error:
        log.warning("could not write the app's schedules (%s); the last ones written hold", error)
        return 0
    if changed:
        log.info("wrote %d new or changed schedule(s) of %s", changed, app_path)
    return changed


def sync_limits(app_path: str) -> list[str]:
    """Write the app's task limits to the `flow_limits` table, where the queuers find them.
    An outage is reported, not fatal: the limits last written hold until the next start."""
    try:
        changed = load_app(app_path).sync_limits()
    except ConveyorError as error:
        log.warning("could not write the app's task limits (%s); the last ones written hold", error)
        return []
    if changed:
        log.info("task limits written or dropped: %s", ", ".join(sorted(changed)))
    return changed


def install_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional; asyncio's loop works, just slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(
    settings: Settings,
    tasks: TaskRegistry,
    options: WorkerOptions,
    health_port: int | None = None,
    middleware: Sequence[Middleware] = (),
) -> None:
    worker = Worker(settings, tasks, options, middleware=middleware)
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("worker %s: shutting down, finishing in-flight jobs", worker.id)
            stop.set()
        else:
            log.warning("worker %s: second signal, handing back jobs now", worker.id)
            worker.request_stop_now()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_signal)
    loop.add_signal_handler(signal.SIGINT, on_signal)
    watchdog.start(settings, f"worker process {options.worker_id}")
    health = None
    if health_port:
        from conveyor.probes import serve_health

        health = await serve_health(settings, health_port, worker, works_without_redis=True)
    try:
        await worker.run(stop)
    finally:
        if health is not None:
            await health.stop()


def child_main(
    app_path: str, settings: Settings, options: WorkerOptions, health_port: int | None
) -> None:
    """Entry point of a supervised child (spawned: no state inherited from the parent but
    the environment, which carries CONVEYOR_CONFIG)."""
    from conveyor.logs import configure_logging

    configure_logging(settings)
    # The supervisor forwards SIGTERM; a terminal's Ctrl-C reaches the whole process group,
    # and must not count as a second signal here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_loop_policy()
    try:
        app = load_checked_app(app_path, settings)
    except SettingsMismatch as error:
        log.error("%s", error)
        sys.exit(2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, app.tasks, options, health_port, app.middleware))
    sys.exit(0)
