"""Server-side login sessions: the cookie names a session kept in PostgreSQL.

A signed cookie that carried the principal itself could not be taken back: a copy saved
before logout, a password change or a token rotation kept working until the secret
changed. Now the cookie holds a random id; the session row (see `admin.sessions`) says
who it is for, with which role and credential fingerprint, and when it ends: 12 hours
after login, however busy. Logout revokes the row; a changed password or token no longer
matches its fingerprint.

Each request looks its session up once (in `SessionPrincipals`, before the routes), with
a per-process cache of a few seconds: a logout here takes effect at once, one in another
`conveyor web` process within `CACHE_SECONDS`.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.admin import AdminUnavailable

if TYPE_CHECKING:
    from conveyor.admin import Admin
    from conveyor.admin.sessions import WebSession
    from conveyor.web.auth import Principal

SESSION_SECONDS = 12 * 3600
CACHE_SECONDS = 2.0
CACHE_ENTRIES = 10_000
SESSION_ID = "sid"
# Where the middleware leaves the request's session lookup for `Authenticator`.
SCOPE_KEY = "conveyor.web_session"
UNAVAILABLE = "unavailable"


class SessionCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, WebSession | None]] = {}

    async def lookup(self, admin: Admin, session_id: str) -> WebSession | str | None:
        now = time.monotonic()
        cached = self._entries.get(session_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            found = await admin.web_session(session_id)
        except AdminUnavailable:
            return UNAVAILABLE
        if len(self._entries) >= CACHE_ENTRIES:
            self._entries.clear()
        self._entries[session_id] = (now, found)
        return found

    def forget(self, session_id: str) -> None:
        self._entries.pop(session_id, None)


class SessionPrincipals:
    """ASGI middleware, inside SessionMiddleware: look the cookie's session up."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "session" in scope:
            session_id = scope["session"].get(SESSION_ID)
            state = scope["app"].state
            if isinstance(session_id, str):
                admin = getattr(state, "admin", None)
                if admin is not None:
                    scope[SCOPE_KEY] = await state.web_sessions.lookup(admin, session_id)
        await self.app(scope, receive, send)


async def start_session(request: Request, principal: Principal) -> None:
    """A new session (and a new cookie id and CSRF token: nothing survives from before
    login, so a planted cookie cannot be promoted)."""
    credential = request.app.state.authenticator.credential_of(principal)
    session_id = await request.app.state.admin.open_web_session(
        principal.actor, principal.role, credential, SESSION_SECONDS
    )
    request.session.clear()
    request.session[SESSION_ID] = session_id
    request.session["csrf"] = secrets.token_urlsafe(32)


async def end_session(request: Request) -> None:
    session_id = request.session.get(SESSION_ID)
    if isinstance(session_id, str):
        await request.app.state.admin.end_web_session(session_id)
        request.app.state.web_sessions.forget(session_id)
    request.session.clear()
