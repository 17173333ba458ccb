"""What every dashboard page shares: templates, headers, flash messages, htmx replies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, cast
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from conveyor.admin import Admin
from conveyor.config import Settings
from conveyor.scope import UNRESTRICTED
from conveyor.web.auth import Authenticator, Principal, csrf_token, scoped_admin
from conveyor.web.pages.format import FILTERS, sparkline
from conveyor.web.pages.history import ThroughputHistory

FlashKind = Literal["ok", "error"]

TEMPLATES = Environment(
    loader=PackageLoader("conveyor.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(FILTERS)
TEMPLATES.filters["urlpart"] = lambda value: quote(str(value), safe="")
TEMPLATES.globals["sparkline"] = sparkline

# Everything the pages load comes from /static, so the browser may refuse anything else:
# an injected <script> or inline handler would not run even if escaping ever failed.
# htmx is configured (meta tag) not to evaluate code nor inject its own style element.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages carry job payloads and a CSRF token: never keep them in a shared cache.
    "Cache-Control": "no-store",
    "Vary": "HX-Request, Cookie",
}


def admin_of(request: Request) -> Admin:
    """The admin layer limited to the logged-in caller's scope (tenants, queues)."""
    return scoped_admin(request)


def settings_of(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def history_of(request: Request) -> ThroughputHistory:
    """The throughput sparklines of the caller's scope: one history per scope, so a
    tenant-scoped page never draws figures an unscoped one recorded (or the reverse)."""
    state = request.app.state
    histories = getattr(state, "dashboard_history", None)
    if not isinstance(histories, dict):
        histories = {}
        state.dashboard_history = histories
    principal = getattr(request.state, "principal", None)
    scope = principal.scope if isinstance(principal, Principal) else UNRESTRICTED
    history = histories.get(scope)
    if not isinstance(history, ThroughputHistory):
        history = histories[scope] = ThroughputHistory()
    return history


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def current_principal(request: Request) -> Principal | None:
    """Who is logged in, for pages rendered outside `guarded` (errors, login)."""
    authenticator = getattr(request.app.state, "authenticator", None)
    if not isinstance(authenticator, Authenticator) or "session" not in request.scope:
        return None
    try:
        return authenticator.from_request(request)
    except HTTPException:  # the session cannot be checked now: show the page logged out
        return None


def flash(request: Request, text: str, kind: FlashKind = "ok") -> None:
    """A message for the next full page this session loads (after a redirect)."""
    request.session["flash"] = {"kind": kind, "text": text}


def take_flash(request: Request) -> dict[str, str] | None:
    if "session" not in request.scope:
        return None
    value = request.session.pop("flash", None)
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return {"kind": str(value.get("kind", "ok")), "text": value["text"]}
    return None


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    principal: Principal | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page or fragment with what every template may use."""
    settings = settings_of(request)
    who = principal if principal is not None else current_principal(request)
    base: dict[str, Any] = {
        "request": request,
        "principal": who,
        "can_operate": who is not None and who.can("operator"),
        "can_admin": who is not None and who.can("admin"),
        # Only a button hint: the admin layer refuses a tenant-scoped pause whatever is drawn.
        "can_pause": who is not None and who.can("operator") and who.scope.tenants is None,
        "csrf": csrf_token(request) if "session" in request.scope else "",
        "refresh_seconds": settings.web.refresh_interval,
        "flash": None,
        "nav": "",
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    if not template.startswith("_"):
        base["flash"] = take_flash(request)
    base.update(context or {})
    html = TEMPLATES.get_template(template).render(base)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def query_string(params: Mapping[str, Any]) -> str:
    """The non-empty parameters, URL-encoded (for links and fragment URLs)."""
    return urlencode({key: value for key, value in params.items() if value not in (None, "")})


def safe_next(value: object, default: str = "/") -> str:
    """A local path to go back to; anything that could leave this site becomes `default`."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return default
    return value


def back_path(request: Request, form: FormData, default: str) -> str:
    """Where a plain (non-htmx) form post returns to: its `next` field, else the page
    it came from when that page is ours."""
    given = form.get("next")
    if isinstance(given, str) and given:
        return safe_next(given, default)
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.headers.get("host", ""):
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            return safe_next(path, default)
    return default


def acted(
    request: Request,
    form: FormData,
    text: str,
    *,
    kind: FlashKind = "ok",
    default_next: str = "/",
    event: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    """The reply to an action: for htmx a flash fragment plus an event that makes the page
    refresh what changed; for a plain form post a redirect that shows the message."""
    if is_htmx(request):
        trigger = json.dumps({"conveyor-acted": dict(event or {})})
        return render(
            request,
            "_flash.html",
            {"flash": {"kind": kind, "text": text}},
            status=status,
            headers={"HX-Trigger": trigger},
        )
    flash(request, text, kind)
    return RedirectResponse(back_path(request, form, default_next), status_code=303)


def error_response(request: Request, status: int, message: str) -> Response:
    """An error as a full page, or as plain text the page's script shows in its flash
    area when htmx made the request (htmx does not swap error responses)."""
    if is_htmx(request):
        return PlainTextResponse(message, status_code=status, headers=SECURITY_HEADERS)
    return render(
        request,
        "error.html",
        {"status": status, "message": message},
        status=status,
    )


def form_ids(form: FormData) -> list[str]:
    return [value for value in form.getlist("ids") if isinstance(value, str) and value]
