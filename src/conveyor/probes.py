"""/healthz, /readyz and /metrics for every long-running process, on the admin port.

Liveness is "the process answers". Readiness checks PostgreSQL and Redis right now and
asks the component whether it is doing its job; the body names every failing check.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Generator
from typing import Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from conveyor.config import Settings
from conveyor.errors import ConveyorError, reason
from conveyor.lanes import Lanes
from conveyor.metrics import exposition
from conveyor.store import Store
from conveyor.watchdog_http import stuck_response

# A readiness probe must answer well within the orchestrator's own timeout.
PROBE_SECONDS = 2.0


class Component(Protocol):
    ready: bool
    not_ready_reason: str


async def check_postgres(settings: Settings) -> str | None:
    """None if PostgreSQL answers a statement now, else why not (on a connection of its
    own, so a busy pool cannot fail the check, and nothing is held between checks)."""
    try:
        # Connecting gives up after PROBE_SECONDS; the outer limit covers a stalled answer.
        async with asyncio.timeout(PROBE_SECONDS * 2):
            async with Store.connected(settings, "probe", PROBE_SECONDS) as store:
                await store.ping()
    except (ConveyorError, TimeoutError) as error:
        return f"PostgreSQL: {reason(error)}"
    return None


async def check_redis(settings: Settings) -> str | None:
    lanes = Lanes.open(settings, timeout=PROBE_SECONDS)
    try:
        await lanes.ping()
    except ConveyorError as error:
        return f"Redis: {reason(error)}"
    finally:
        await lanes.close()
    return None


def health_routes(
    settings: Settings, component: Component | Callable[[], str | None]
) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return stuck_response() or PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        checks = await asyncio.gather(check_postgres(settings), check_redis(settings))
        failures = [failure for failure in checks if failure]
        if callable(component):
            problem = component()
            if problem:
                failures.append(problem)
        elif not component.ready:
            failures.append(component.not_ready_reason or "not ready")
        if failures:
            return JSONResponse({"ready": False, "failing": failures}, status_code=503)
        return JSONResponse({"ready": True, "failing": []})

    async def metrics(_: Request) -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def health_app(settings: Settings, component: Component | Callable[[], str | None]) -> Starlette:
    return Starlette(routes=health_routes(settings, component))


class _QuietServer(uvicorn.Server):
    """The host process owns the signals; uvicorn must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HealthServer:
    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None] | None = None,
        thread: threading.Thread | None = None,
    ) -> None:
        self.server = server
        self.task = task
        self.thread = thread

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task

    def stop_thread(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(5)


def _server(
    settings: Settings, port: int, component: Component | Callable[[], str | None]
) -> uvicorn.Server:
    config = uvicorn.Config(
        health_app(settings, component),
        host=settings.health.host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    return _QuietServer(config)


async def serve_health(settings: Settings, port: int, component: Component) -> HealthServer:
    """Serve in the caller's event loop (queuer, worker process)."""
    server = _server(settings, port, component)
    task = asyncio.get_running_loop().create_task(server.serve())
    return HealthServer(server, task=task)


def serve_health_in_thread(
    settings: Settings, port: int, check: Callable[[], str | None]
) -> HealthServer:
    """Serve from a thread (the supervisor's main thread is a plain loop, not asyncio)."""
    server = _server(settings, port, check)
    thread = threading.Thread(target=server.run, name="conveyor-health", daemon=True)
    thread.start()
    return HealthServer(server, thread=thread)
