"""The web section: who may log in to the API and the dashboard, and how."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from annotated_types import Ge
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    model_validator,
)

from conveyor.config.base import Role, _FieldProblem, _Section
from conveyor.config.secrets import check_password_hash, check_session_secret
from conveyor.durations import (
    CommaList,
    Interval,
    OptStr,
    Port,
    lowercase,
)

SCOPE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(?::[A-Za-z0-9_.\-]+)*$")


def _check_scope_names(names: list[str] | None) -> list[str] | None:
    # An empty list would be a credential that sees nothing: almost surely a mistake.
    if names is None:
        return None
    if not names:
        raise ValueError("must list at least one name (leave it out for no restriction)")
    for name in names:
        if not SCOPE_NAME.match(name) or len(name) > 100:
            raise ValueError(
                f"{name!r} is not a tenant or queue name (1-100 letters, digits, '_', '.', "
                "'-', in parts separated by single ':')"
            )
    return names


ScopeNames = Annotated[list[str] | None, AfterValidator(_check_scope_names)]


class ApiToken(_Section):
    name: str = Field(min_length=1)
    token: str = Field(min_length=16, repr=False)
    role: Role
    # When given, the token sees and acts on only these tenants' jobs / these queues.
    tenants: ScopeNames = None
    queues: ScopeNames = None


class WebUser(_Section):
    username: str = Field(min_length=1)
    password_hash: Annotated[str, AfterValidator(check_password_hash)] = Field(repr=False)
    role: Role
    tenants: ScopeNames = None
    queues: ScopeNames = None


def _parse_tokens(value: object) -> object:
    # The one nested setting an environment variable may carry: "name:role:token,...".
    if not isinstance(value, str):
        return value
    entries = [part.strip() for part in value.split(",") if part.strip()]
    parsed = []
    for number, entry in enumerate(entries, start=1):
        name, role, token = [*entry.split(":", 2), "", ""][:3]
        if not (name and role and token):
            # The entry itself is never echoed: it holds a secret.
            raise ValueError(f"entry {number} is not name:role:token")
        parsed.append({"name": name, "role": role, "token": token})
    return parsed


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[Port, Ge(1)] = 8080
    session_secret: Annotated[OptStr, AfterValidator(check_session_secret)] = Field(
        default=None, repr=False
    )
    tokens: Annotated[list[ApiToken], BeforeValidator(_parse_tokens)] = Field(
        default_factory=list, repr=False
    )
    users: list[WebUser] = Field(default_factory=list)
    secure_cookies: Annotated[Literal["auto", "always", "never"], BeforeValidator(lowercase)] = (
        "auto"
    )
    refresh_interval: Interval = 5.0
    allowed_hosts: CommaList = Field(default_factory=list)  # beside loopback and `host`

    @model_validator(mode="after")
    def _check_unique(self) -> Self:
        for label, values in (
            ("token name", [t.name for t in self.tokens]),
            ("token value", [t.token for t in self.tokens]),
            ("username", [u.username for u in self.users]),
        ):
            if len(set(values)) != len(values):
                where = "users" if label == "username" else "tokens"
                raise _FieldProblem(f"each {label} must be unique", where)
        return self
