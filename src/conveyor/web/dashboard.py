"""The operators' dashboard: server-rendered pages refreshed in place by htmx.

Every figure and every action comes from the admin layer (`request.app.state.admin`);
the pages hold no SQL and no Redis commands. Reads need the viewer role, actions the
operator role, purging the dead-letter queue the admin role; the server checks the
role (and the CSRF token) on every post, whatever buttons a page showed.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from conveyor.web.pages import (
    alerts,
    batches,
    charts,
    dead,
    jobs,
    login,
    queues,
    schedules,
    workers,
)
from conveyor.web.pages.common import error_response, is_htmx


def routes() -> list[BaseRoute]:
    return [
        *login.routes(),
        *queues.routes(),
        *jobs.routes(),
        *dead.routes(),
        *workers.routes(),
        *alerts.routes(),
        *charts.routes(),
        *schedules.routes(),
        *batches.routes(),
    ]


def error_page(request: Request, status: int, message: str) -> Response:
    return error_response(request, status, message)


def login_redirect(request: Request) -> Response:
    """Send someone who is not logged in (or whose session ended) to the login page,
    and back to where they were going afterwards."""
    if is_htmx(request):
        back = _local(request.headers.get("hx-current-url") or "/")
    elif request.method == "GET":
        back = _local(str(request.url))
    else:
        back = _local(request.headers.get("referer") or "/")
    plain = back == "/" or back.startswith("/login")
    url = "/login" if plain else f"/login?{urlencode({'next': back})}"
    if is_htmx(request):
        # A background refresh must move the whole page rather than paste a login form
        # into a table: htmx answers HX-Redirect with a full navigation.
        return Response(headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _local(url: str) -> str:
    """The path and query of `url`, so `next` never names another site."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
