"""Response headers every answer of `conveyor web` gets, whoever built it (an endpoint,
an error handler, Starlette itself)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS_SECONDS = 365 * 86400


class SecurityHeaders:
    """nosniff everywhere; no-store on the API (its answers carry payloads and errors);
    HSTS when served over TLS, so a browser never falls back to plain HTTP (and its
    cookie) after the first visit."""

    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if api:
                    headers["Cache-Control"] = "no-store"
                if self.tls:
                    headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
            await send(message)

        await self.app(scope, receive, with_headers)
