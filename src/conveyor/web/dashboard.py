"""The operators' dashboard. Placeholder until the dashboard lands."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []


def error_page(request: Request, status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


def login_redirect(request: Request) -> Response:
    return RedirectResponse("/login", status_code=303)
