"""Logging in with an API token or a configured user, and logging out."""

from __future__ import annotations

import asyncio
from typing import cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conveyor.web.auth import Authenticator, Principal, check_csrf, guarded
from conveyor.web.pages.common import current_principal, flash, render, safe_next
from conveyor.web.sessions import end_session, start_session


def _login_page(
    request: Request, *, next_path: str, error: str = "", username: str = "", status: int = 200
) -> Response:
    return render(
        request,
        "login.html",
        {"next": next_path, "error": error, "username": username, "nav": "login"},
        status=status,
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
    username = username.strip() if isinstance(username, str) else ""
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
    token = form.get("token")
    password = form.get("password")
    principal: Principal | None = None
    if isinstance(token, str) and token.strip():
        principal = auth.from_token(token.strip())
        wrong = "that token is not valid"
    elif username and isinstance(password, str) and password:
        # scrypt takes tens of milliseconds on purpose: keep it off the event loop.
        principal = await asyncio.to_thread(auth.from_password, username, password)
        wrong = "wrong user name or password"
    else:
        wrong = "enter an API token, or a user name and password"
    if principal is None:
        return _login_page(request, next_path=next_path, error=wrong, username=username, status=401)
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
