"""/healthz, /readyz and /metrics for every long-running process, on the admin port.

Liveness is "the process answers". Readiness checks PostgreSQL and Redis and asks the
component whether it is doing its job; the body names every failing check. The checks run
at most once a second however often /readyz is asked (each opens connections of its
own), and the body names a failed dependency without its host, port or role, which
anyone who can reach the port could read: the process log has the details.
A queuer or a worker keeps working from PostgreSQL alone when no Redis answers
(postgres-only mode), so for them an unreachable Redis is reported as the `mode`, not as
a failure. Which configured Redis is in use is given by its index, not its address.
/metrics adds the queue gauges, which this process reads from PostgreSQL itself (see
`conveyor.queue_gauges`), so every scrape target reports the same queue figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from conveyor.autoscale.signal import DESIRED_WORKERS
from conveyor.config import Settings
from conveyor.errors import ConveyorError, reason
from conveyor.lanes import Lanes
from conveyor.metrics import exposition
from conveyor.queue_gauges import QueueGauges
from conveyor.store import Store
from conveyor.watchdog_http import stuck_response

log = logging.getLogger("conveyor.probes")

# A readiness probe must answer well within the orchestrator's own timeout.
PROBE_SECONDS = 2.0
# Checks this recent answer /readyz again (and concurrent requests share one check).
READY_CACHE_SECONDS = 1.0


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


async def survey_redis(settings: Settings) -> tuple[str | None, dict[str, Any]]:
    """Ping every configured Redis now. Ready while any answers: a process on a backup is
    doing its job. Returns (why not ready, the Redis the failover rule picks now)."""
    lanes = Lanes.open(settings, timeout=PROBE_SECONDS)
    try:
        found = await lanes.survey()
    finally:
        await lanes.close()
    first = next((index for index, (_, error) in enumerate(found) if error is None), None)
    if first is None:
        if len(found) == 1:
            return f"Redis: {found[0][1]}", {"url": found[0][0], "index": 0}
        reasons = "; ".join(f"{url}: {error}" for url, error in found)
        return f"Redis: none of {len(found)} answers ({reasons})", {}
    return None, {"url": found[first][0], "index": first, "failover_active": first > 0}


async def check_redis(settings: Settings) -> str | None:
    problem, _ = await survey_redis(settings)
    return problem


def _active_redis(component: object) -> dict[str, Any] | None:
    """The Redis this process's own lanes use now (queuer, worker), if it has lanes."""
    attributes = getattr(component, "__dict__", {})
    # Workers keep their lanes private; the attribute is only read, never used.
    lanes = attributes.get("lanes") or attributes.get("_lanes")
    if not isinstance(lanes, Lanes):
        return None
    active = lanes.endpoint
    return {"index": active.index, "failover_active": active.on_backup}


def masked(failure: str) -> str:
    # "PostgreSQL: connection to 10.0.0.5 port 5432 as conveyor failed" -> the name only.
    return f"{failure.partition(':')[0]}: unavailable"


def postgres_only(failures: list[str], redis_problem: str | None) -> dict[str, str]:
    """The readiness body's mode for a process that works without Redis; removes the
    Redis failure from `failures` when PostgreSQL answers (that process still works)."""
    shown = None if redis_problem is None else masked(redis_problem)
    if shown is None or len(failures) > 1 or shown not in failures:
        return {"mode": "normal"}
    failures.remove(shown)
    return {"mode": "postgres-only", "reason": "Redis unreachable"}


class _DependencyChecks:
    """The PostgreSQL and Redis checks, at most once per READY_CACHE_SECONDS."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = asyncio.Lock()
        self.checked = -READY_CACHE_SECONDS
        self.found: tuple[str | None, str | None, dict[str, Any]] = (None, None, {})

    async def current(self) -> tuple[str | None, str | None, dict[str, Any]]:
        """(PostgreSQL's problem, Redis's problem, the Redis in use), unmasked: callers
        mask what they show; the log has the details."""
        async with self.lock:
            if time.monotonic() - self.checked >= READY_CACHE_SECONDS:
                postgres, (redis_problem, redis) = await asyncio.gather(
                    check_postgres(self.settings), survey_redis(self.settings)
                )
                for failure in (postgres, redis_problem):
                    if failure:
                        log.warning("readiness check failed: %s", failure)
                redis.pop("url", None)
                self.found = (postgres, redis_problem, redis)
                self.checked = time.monotonic()
            return self.found


def health_routes(
    settings: Settings,
    component: Component | Callable[[], str | None],
    *,
    works_without_redis: bool = False,
    queue_gauges: bool = True,
) -> list[Route]:
    """The three probes. `queue_gauges=False` keeps the queue gauges (queue names and
    figures) out of /metrics wherever `health.queue_gauges` is on: for a port that may be
    public, like the web port."""
    dependencies = _DependencyChecks(settings)
    gauges = QueueGauges(settings) if queue_gauges and settings.health.queue_gauges else None

    async def healthz(_: Request) -> Response:
        return stuck_response() or PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        postgres, redis_problem, redis = await dependencies.current()
        failures = [masked(failure) for failure in (postgres, redis_problem) if failure]
        mode = postgres_only(failures, redis_problem) if works_without_redis else {}
        redis = _active_redis(component) or redis
        if callable(component):
            problem = component()
            if problem:
                failures.append(problem)
        elif not component.ready:
            failures.append(component.not_ready_reason or "not ready")
        if failures:
            body = {"ready": False, "failing": failures, "redis": redis, **mode}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"ready": True, "failing": [], "redis": redis, **mode})

    async def metrics(request: Request) -> Response:
        admin = getattr(request.app.state, "admin", None)
        if admin is not None:  # the web process: it exports the scaling signal
            await DESIRED_WORKERS.refresh(admin)
        if gauges is None:
            return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
        await gauges.refresh()
        return Response(exposition(gauges), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def health_app(
    settings: Settings,
    component: Component | Callable[[], str | None],
    *,
    works_without_redis: bool = False,
) -> Starlette:
    routes = health_routes(settings, component, works_without_redis=works_without_redis)
    return Starlette(routes=routes)


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
    settings: Settings,
    port: int,
    component: Component | Callable[[], str | None],
    works_without_redis: bool,
) -> uvicorn.Server:
    config = uvicorn.Config(
        health_app(settings, component, works_without_redis=works_without_redis),
        host=settings.health.host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    return _QuietServer(config)


async def serve_health(
    settings: Settings, port: int, component: Component, *, works_without_redis: bool = False
) -> HealthServer:
    """Serve in the caller's event loop (queuer, worker process)."""
    server = _server(settings, port, component, works_without_redis)
    task = asyncio.get_running_loop().create_task(server.serve())
    return HealthServer(server, task=task)


def serve_health_in_thread(
    settings: Settings,
    port: int,
    check: Callable[[], str | None],
    *,
    works_without_redis: bool = False,
) -> HealthServer:
    """Serve from a thread (the supervisor's main thread is a plain loop, not asyncio)."""
    server = _server(settings, port, check, works_without_redis)
    thread = threading.Thread(target=server.run, name="conveyor-health", daemon=True)
    thread.start()
    return HealthServer(server, thread=thread)
