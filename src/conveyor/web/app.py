"""The `conveyor web` application: the JSON admin API under /api and the dashboard at /.

Both call only the admin layer. The process also serves its own /healthz, /readyz and
/metrics like every other Conveyor process.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from conveyor.admin import (
    Admin,
    AdminConflict,
    AdminError,
    AdminForbidden,
    AdminNotFound,
    AdminUnavailable,
)
from conveyor.config import Settings
from conveyor.probes import health_routes
from conveyor.tasks import TaskRegistry
from conveyor.web import api, dashboard
from conveyor.web.auth import Authenticator
from conveyor.web.headers import SecurityHeaders
from conveyor.web.sessions import SESSION_SECONDS, SessionCache, SessionPrincipals
from conveyor.web.throttle import LoginThrottle

log = logging.getLogger("conveyor.web")

SESSION_COOKIE = "conveyor_session"
# Over TLS the cookie takes the __Host- prefix: browsers then accept it only if it is
# Secure, for path / and without a Domain, so no sibling host can plant or shadow it.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE


def admin_error_status(error: Exception) -> int:
    if isinstance(error, AdminNotFound):
        return 404
    if isinstance(error, AdminConflict):
        return 409
    if isinstance(error, AdminForbidden):
        return 403
    if isinstance(error, AdminUnavailable):
        return 503
    return 400


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def allowed_hosts(settings: Settings) -> list[str]:
    """Host names the app answers to. Anything else may be DNS rebinding: a page on
    attacker.example whose name now resolves to this address, reading our answers."""
    return list(dict.fromkeys([*LOOPBACK_NAMES, settings.web.host, *settings.web.allowed_hosts]))


def create_app(
    settings: Settings, *, tls: bool = False, tasks: TaskRegistry | None = None
) -> Starlette:
    """`tasks`: the application's tasks, when `conveyor web --app` loaded them, so an
    edited replay is checked against the task's payload model."""
    secure = settings.web.secure_cookies == "always" or (
        settings.web.secure_cookies == "auto" and tls
    )
    # Without a configured secret, sessions are valid only until this process restarts.
    secret = settings.web.session_secret or secrets.token_urlsafe(32)
    if settings.web.session_secret is None:
        log.warning(
            "web.session_secret is not set: this process signs cookies with a random secret, "
            "so every login ends when it restarts and other conveyor web processes refuse "
            "its cookies; set one (python -c 'import secrets; print(secrets.token_hex(32))')"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        admin = Admin(settings, tasks=tasks)
        await admin.open()
        app.state.admin = admin
        try:
            yield
        finally:
            await admin.close()

    async def on_admin_error(request: Request, error: Exception) -> Response:
        status = admin_error_status(error)
        if request.url.path.startswith("/api"):
            return JSONResponse({"error": str(error)}, status_code=status)
        return dashboard.error_page(request, status, str(error))

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)  # noqa: S101
        if request.url.path.startswith("/api") or error.status_code != 401:
            if request.url.path.startswith("/api"):
                return JSONResponse(
                    {"error": error.detail}, status_code=error.status_code, headers=error.headers
                )
            return dashboard.error_page(request, error.status_code, str(error.detail))
        return dashboard.login_redirect(request)

    app = Starlette(
        routes=[
            Mount("/api", routes=api.routes()),
            Mount("/static", StaticFiles(packages=[("conveyor.web", "static")]), name="static"),
            # The web port may be public: queue names and figures only on the health port.
            *health_routes(settings, lambda: None, queue_gauges=False),
            *dashboard.routes(),
        ],
        middleware=[
            Middleware(SecurityHeaders, tls=tls),
            Middleware(
                TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings), www_redirect=False
            ),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SECURE_SESSION_COOKIE if secure else SESSION_COOKIE,
                max_age=SESSION_SECONDS,
                same_site="strict",
                https_only=secure,
            ),
            Middleware(SessionPrincipals),
        ],
        exception_handlers={
            AdminError: on_admin_error,
            AdminUnavailable: on_admin_error,
            HTTPException: on_http_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.authenticator = Authenticator(settings)
    app.state.web_sessions = SessionCache()
    app.state.login_throttle = LoginThrottle()
    return app


async def serve(
    settings: Settings,
    host: str,
    port: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    tasks: TaskRegistry | None = None,
) -> None:
    import uvicorn

    app = create_app(settings, tls=certfile is not None, tasks=tasks)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log.level,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        access_log=False,
    )
    server = uvicorn.Server(config)
    await server.serve()
