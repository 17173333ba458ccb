"""One worker process: import the app, run a Worker, turn signals into a drain."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys

from conveyor.app import Conveyor
from conveyor.config import Settings
from conveyor.worker.runner import Worker, WorkerOptions

log = logging.getLogger("conveyor.worker")


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


def install_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional; asyncio's loop works, just slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(app: Conveyor, options: WorkerOptions, health_port: int | None = None) -> None:
    worker = Worker(app, options)
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
    health = None
    if health_port:
        from conveyor.probes import serve_health

        health = await serve_health(app.settings, health_port, worker)
    try:
        await worker.run(stop)
    finally:
        if health is not None:
            await health.stop()


def child_main(
    app_path: str, settings: Settings, options: WorkerOptions, health_port: int | None
) -> None:
    """Entry point of a supervised child (spawned: no state inherited from the parent)."""
    from conveyor.logs import configure_logging

    configure_logging(settings)
    # The supervisor forwards SIGTERM; a terminal's Ctrl-C reaches the whole process group,
    # and must not count as a second signal here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_loop_policy()
    app = load_app(app_path)
    app.settings = settings
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, options, health_port))
    sys.exit(0)
