"""The PostgreSQL and Redis sections: where to connect, how, and to what else on failure."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from conveyor.config.base import _FieldProblem, _Section
from conveyor.durations import (
    CommaList,
    Interval,
    OptStr,
    PosInt,
    lowercase,
)

_SQL_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class DatabaseSettings(_Section):
    url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # `schema` would shadow a BaseModel method, hence the alias for the file/env spelling.
    schema_name: str = Field(
        default="conveyor", validation_alias="schema", serialization_alias="schema"
    )
    pool_size: PosInt = 10
    connect_timeout: Interval = 5.0
    # transaction: behind PgBouncer's pool_mode=transaction (no prepared statements, no
    # startup options); LISTEN and the leader lock then need `direct_url`, or poll and lease.
    pooler_mode: Annotated[Literal["session", "transaction"], BeforeValidator(lowercase)] = (
        "session"
    )
    direct_url: OptStr = None

    @field_validator("url", "direct_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.strip():
            raise ValueError("must not be empty")
        if "://" in url and urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL (or a libpq key=value string)")
        return url

    @field_validator("schema_name")
    @classmethod
    def _check_schema(cls, name: str) -> str:
        if not _SQL_IDENTIFIER.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a plain SQL identifier: use a-z, 0-9 and _, "
                "not starting with a digit, at most 63 characters"
            )
        return name


def _check_redis_url(url: str) -> str:
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return url


def _check_node(node: str) -> str:
    host, sep, port = node.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"each node must be host:port, e.g. 10.0.0.7:26379 (got {node!r})")
    return node


class SentinelSettings(_Section):
    """Redis Sentinel: the primary's address comes from the sentinels watching `service`."""

    service: str = Field(default="mymaster", min_length=1)
    nodes: CommaList

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: list[str]) -> list[str]:
        if not nodes:
            raise ValueError("list at least one sentinel as host:port")
        return [_check_node(node) for node in nodes]


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    addr: OptStr = None
    key_prefix: str = ""
    socket_timeout: Interval = 5.0
    pool_size: PosInt = 50
    failover_urls: CommaList = Field(default_factory=list, repr=False)
    failover_after: Interval = 5.0
    failback_after: Interval = 30.0
    sentinel: SentinelSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _apply_addr(cls, data: Any) -> Any:
        # Folded into `url` here so every consumer can simply connect to `redis.url`.
        if not isinstance(data, dict):
            return data
        addr, url = data.get("addr"), data.get("url", cls.model_fields["url"].default)
        if isinstance(addr, str) and addr.strip() and isinstance(url, str):
            data = {**data, "url": _replace_host_port(url, addr.strip())}
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return _check_redis_url(url)

    @field_validator("failover_urls")
    @classmethod
    def _check_failover_urls(cls, urls: list[str]) -> list[str]:
        for number, url in enumerate(urls, start=1):
            if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
                # The URL itself is not echoed: it may hold a password.
                raise ValueError(f"entry {number} must start with redis://, rediss:// or unix://")
        return urls

    @model_validator(mode="after")
    def _check_failover(self) -> Self:
        if self.sentinel is not None and self.failover_urls:
            # Two mechanisms choosing the primary would disagree; Sentinel already fails over.
            raise _FieldProblem(
                "redis.failover_urls and redis.sentinel cannot both be set: Sentinel already "
                "moves Conveyor to a promoted replica, and two mechanisms would disagree",
                "failover_urls",
                "sentinel",
            )
        if self.url in self.failover_urls:
            raise _FieldProblem("must not repeat redis.url", "failover_urls")
        if len(set(self.failover_urls)) != len(self.failover_urls):
            raise _FieldProblem("lists the same URL twice", "failover_urls")
        return self


def _replace_host_port(url: str, addr: str) -> str:
    host, sep, port = addr.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise _FieldProblem(f"must be host:port, e.g. 10.0.0.5:6379 (got {addr!r})", "addr")
    if ":" in host and not host.startswith("["):
        raise _FieldProblem("write IPv6 addresses in brackets, e.g. [::1]:6379", "addr")
    parts = urlsplit(url)
    if parts.scheme == "unix":
        raise _FieldProblem("cannot be combined with a unix:// redis.url", "addr")
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{addr}" if at else addr))
