"""Who is asking, and may they: bearer tokens, login sessions, roles and CSRF.

API clients send `Authorization: Bearer <token>` (tokens and their roles come from
configuration). People log in to the dashboard with a token or a configured user and get
a signed, HttpOnly, SameSite=Strict session cookie (Secure when served over TLS) naming a
session kept in PostgreSQL (`web.sessions`). Every state change made with a session
cookie must carry the session's CSRF token and come from our own origin; bearer requests
carry no ambient credential, so they need neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor.config import Settings
from conveyor.config.secrets import SCRYPT_N, SCRYPT_P, SCRYPT_R
from conveyor.scope import UNRESTRICTED, Scope
from conveyor.web.sessions import SCOPE_KEY, UNAVAILABLE

if TYPE_CHECKING:
    from conveyor.admin import Admin

Role = Literal["viewer", "operator", "admin"]
RANKS: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    kind: Literal["token", "user"]
    via_session: bool = False
    # The tenants and queues it is limited to, from the configuration of its token or
    # user as it is now (a session picks up a changed scope at once).
    scope: Scope = UNRESTRICTED

    def can(self, role: Role) -> bool:
        return RANKS[self.role] >= RANKS[role]

    @property
    def actor(self) -> str:
        """How audit rows name this caller."""
        return f"{self.kind}:{self.name}"


def hash_password(password: str) -> str:
    """An scrypt hash for `web.users[].password_hash` (see `conveyor hash-password`)."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    encode = base64.urlsafe_b64encode
    return (
        f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"
    )


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.tokens = [(t.token.encode(), t.name, t.role) for t in settings.web.tokens]
        self.users = {u.username: u for u in settings.web.users}
        self.scopes = {
            **{f"token:{t.name}": Scope.of(t.tenants, t.queues) for t in settings.web.tokens},
            **{f"user:{u.username}": Scope.of(u.tenants, u.queues) for u in settings.web.users},
        }
        # What a session is bound to: a new password hash or token value ends it.
        self.credentials = {
            **{f"token:{t.name}": _fingerprint(t.token) for t in settings.web.tokens},
            **{f"user:{u.username}": _fingerprint(u.password_hash) for u in settings.web.users},
        }

    def credential_of(self, principal: Principal) -> str:
        return self.credentials[principal.actor]

    def from_token(self, token: str) -> Principal | None:
        offered = token.encode()
        found = None
        for secret, name, role in self.tokens:
            # Compare against every token so timing says nothing about which one matched.
            if hmac.compare_digest(offered, secret):
                found = Principal(name, role, "token", scope=self.scopes[f"token:{name}"])
        return found

    def from_password(self, username: str, password: str) -> Principal | None:
        user = self.users.get(username)
        if user is None:
            hash_password("timing-equaliser")  # as slow as a real check
            return None
        if not verify_password(password, user.password_hash):
            return None
        return Principal(user.username, user.role, "user", scope=self.scopes[f"user:{username}"])

    def from_request(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return self.from_token(token.strip())
        found = request.scope.get(SCOPE_KEY)
        if found == UNAVAILABLE:
            raise HTTPException(503, "PostgreSQL is unavailable: cannot check the login session")
        if found is None or isinstance(found, str):
            return None
        kind, _, name = found.subject.partition(":")
        if found.role not in RANKS or kind not in ("token", "user"):
            return None
        principal = Principal(name, found.role, kind, via_session=True)
        if not self._still_valid(principal):
            return None
        principal = Principal(
            name, found.role, kind, via_session=True, scope=self.scopes[principal.actor]
        )
        if self.credentials.get(principal.actor) != found.credential:
            return None  # the password or token changed since login
        return principal

    def _still_valid(self, principal: Principal) -> bool:
        """A session ends when its token or user is removed from configuration."""
        if principal.kind == "user":
            user = self.users.get(principal.name)
            return user is not None and user.role == principal.role
        return any(
            name == principal.name and role == principal.role for _, name, role in self.tokens
        )


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """403 unless a cookie-authenticated state change is same-origin and carries the token."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin:
        if urlsplit(origin).netloc != request.headers.get("host", ""):
            raise HTTPException(403, "cross-site request refused")
    elif request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    submitted = request.headers.get(CSRF_HEADER)
    # Only the dashboard's forms carry the token as a field. The API's body is JSON for
    # its endpoint to read: parsing it as a form here would consume it (and fail).
    is_form = request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    )
    if submitted is None and is_form and not request.url.path.startswith("/api/"):
        value = (await request.form()).get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    expected = request.session.get("csrf")
    if (
        not submitted
        or not isinstance(expected, str)
        or not hmac.compare_digest(submitted.encode(), expected.encode())
    ):
        raise HTTPException(403, "missing or wrong CSRF token")


Endpoint = Callable[[Request, Principal], Awaitable[Response]]


class NotAuthenticated(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            401, "authentication required", headers={"WWW-Authenticate": 'Bearer realm="conveyor"'}
        )


def guarded(
    role: Role = "viewer",
) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """Wrap an endpoint: 401 without credentials, 403 on a wrong role or a failed CSRF
    check. The endpoint receives the caller as its second argument."""

    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @wraps(endpoint)
        async def handler(request: Request) -> Response:
            auth: Authenticator = request.app.state.authenticator
            principal = auth.from_request(request)
            if principal is None:
                raise NotAuthenticated()
            if principal.via_session and request.method in UNSAFE_METHODS:
                await check_csrf(request)
            if not principal.can(role):
                raise HTTPException(403, f"this needs the {role} role; you are {principal.role}")
            # For `scoped_admin`: the admin layer the endpoint uses is limited to the scope.
            request.state.principal = principal
            return await endpoint(request, principal)

        return handler

    return wrap


def scoped_admin(request: Request) -> Admin:
    """The admin layer limited to the caller's tenants and queues. Only `guarded`
    endpoints have a caller: anything else gets a 401 rather than an unscoped admin."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise NotAuthenticated()
    admin: Admin = request.app.state.admin
    return admin.scoped(principal.scope)
