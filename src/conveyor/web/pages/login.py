"""Logging in with an API token or a configured user, and logging out."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conveyor import metrics
from conveyor.web.auth import Authenticator, Principal, check_csrf, guarded
from conveyor.web.pages.common import current_principal, flash, render, safe_next
from conveyor.web.sessions import end_session, start_session
from conveyor.web.throttle import LoginThrottle

log = logging.getLogger("conveyor.web")


def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str = "",
    username: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "login.html",
        {"next": next_path, "error": error, "username": username, "nav": "login"},
        status=status,
        headers=headers,
    )


async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if current_principal(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, next_path=next_path)


async def login_submit(request: Request) -> Response:
    form = await request.form()
    next_path = safe_next(form.get("next"))
    username = form.get("username")
    # Bounded: it becomes a throttle key and a log field.
    username = username.strip()[:200] if isinstance(username, str) else ""
    # The login form carries the anonymous session's CSRF token too: without it another
    # site could log a victim's browser into the attacker's account.
    try:
        await check_csrf(request)
    except HTTPException as error:
        message = f"{error.detail}: reload this page and try again"
        return _login_page(
            request, next_path=next_path, error=message, username=username, status=403
        )
    auth = cast(Authenticator, request.app.state.authenticator)
    throttle = cast(LoginThrottle, request.app.state.login_throttle)
    token = form.get("token")
    password = form.get("password")
    by_token = isinstance(token, str) and bool(token.strip())
    address = request.client.host if request.client else None
    who = "an API token" if by_token else f"user {username!r}"
    keys = throttle.keys(None if by_token else username, address)
    if throttle.wait(keys):
        # Refused before any password is checked: guessing on gains nothing.
        retry_after = throttle.retry_after(keys)
        log.warning("login throttled for %s from %s: retry in %d s", who, address, retry_after)
        metrics.LOGIN_ATTEMPTS.labels("throttled").inc()
        message = f"Too many failed logins: try again in {retry_after} s"
        return _login_page(
            request, next_path=next_path, error=message, username=username, status=429,
            headers={"Retry-After": str(retry_after)},
        )  # fmt: skip
    principal: Principal | None = None
    if by_token:
        principal = auth.from_token(str(token).strip())
        wrong = "that token is not valid"
    elif username and isinstance(password, str) and password:
        # scrypt takes tens of milliseconds on purpose: keep it off the event loop.
        principal = await asyncio.to_thread(auth.from_password, username, password)
        wrong = "wrong user name or password"
    else:
        return _login_page(
            request, next_path=next_path, username=username, status=401,
            error="enter an API token, or a user name and password",
        )  # fmt: skip
    if principal is None:
        throttle.failed(keys)
        log.warning("login failed for %s from %s", who, address)
        metrics.LOGIN_ATTEMPTS.labels("failure").inc()
        return _login_page(request, next_path=next_path, error=wrong, username=username, status=401)
    throttle.succeeded(keys[:-1])  # the user's count; the address keeps its own
    log.info("login succeeded for %s from %s", principal.actor, address)
    metrics.LOGIN_ATTEMPTS.labels("success").inc()
    await start_session(request, principal)
    return RedirectResponse(next_path, status_code=303)


@guarded("viewer")
async def logout(request: Request, principal: Principal) -> Response:
    await end_session(request)
    flash(request, "You are logged out.")
    return RedirectResponse("/login", status_code=303)


def routes() -> list[BaseRoute]:
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
