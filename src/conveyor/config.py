"""Conveyor settings: defaults < YAML file < environment variables < explicit overrides.

pydantic-settings' own sources are not used: every error has to say where the bad value came
from (file line, variable name), bare and ``CONVEYOR_``-prefixed variables must both work with
the prefixed one winning, and variables that look like ours but match nothing must be reported.
So the layers are merged into one plain dict with a parallel map of origins and validated once.
``Settings`` stays a plain model, which keeps ``Settings()`` equal to the pure defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import yaml
from annotated_types import Ge, Le
from cryptography.fernet import Fernet
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from conveyor.durations import (
    ByteSize,
    CommaList,
    Int,
    Interval,
    NonNegDuration,
    NonNegInt,
    OptInterval,
    OptStr,
    Port,
    PosInt,
    format_duration,
    lowercase,
    parse_duration,
    parse_size,
)

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "Settings",
    "format_duration",
    "load_settings",
    "parse_duration",
    "parse_size",
]

Loc = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class ConfigIssue:
    key: str  # dotted, e.g. "worker.count"; empty when the problem is the file itself
    source: str  # "conveyor.yaml line 12", "environment variable WORKER_COUNT", "default", ...
    message: str

    def __str__(self) -> str:
        where = f"{self.key} ({self.source})" if self.key else self.source
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """Every problem found in one pass, so an operator fixes them all in one restart."""

    def __init__(self, errors: Iterable[ConfigIssue]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        head = f"invalid configuration ({count} problem{'' if count == 1 else 's'}):"
        super().__init__("\n  ".join([head, *map(str, self.errors)]))


class _FieldProblem(ValueError):
    """A cross-field check; ``paths`` (relative to the model) name the keys that may be to blame.

    The first path with a known origin gets the report, so the operator is pointed at the value
    they actually wrote rather than at a default it conflicts with.
    """

    def __init__(self, message: str, *paths: str | Loc) -> None:
        super().__init__(message)
        self.paths = [(p,) if isinstance(p, str) else p for p in paths]


Role = Annotated[Literal["viewer", "operator", "admin"], BeforeValidator(lowercase)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_SQL_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class DatabaseSettings(_Section):
    url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # `schema` would shadow a BaseModel method, hence the alias for the file/env spelling.
    schema_name: str = Field(
        default="conveyor", validation_alias="schema", serialization_alias="schema"
    )
    pool_size: PosInt = 10
    connect_timeout: Interval = 5.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
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


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    addr: OptStr = None
    key_prefix: str = ""
    socket_timeout: Interval = 5.0
    pool_size: PosInt = 50

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
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url


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


class QueuerSettings(_Section):
    batch_size: Annotated[PosInt, Le(10_000)] = 500
    buffer_per_queue: PosInt = 1000
    poll_interval: Interval = 0.5
    backlog_poll_interval: Interval = 0.02


class WorkerSettings(_Section):
    count: Annotated[PosInt, Le(10_000)] = 10
    processes: Annotated[PosInt, Le(256)] = 1
    queues: CommaList = Field(default_factory=list)
    lane_order: Annotated[Literal["queue", "priority"], BeforeValidator(lowercase)] = "queue"
    shutdown_grace: NonNegDuration = 30.0
    heartbeat_interval: Interval = 1.0
    dead_after: Interval = 5.0
    lease: Interval = 30.0
    fetch_timeout: Interval = 1.0

    @model_validator(mode="after")
    def _check_liveness(self) -> Self:
        if self.dead_after <= self.heartbeat_interval:
            raise _FieldProblem(
                f"worker.dead_after ({format_duration(self.dead_after)}) must be longer than "
                f"worker.heartbeat_interval ({format_duration(self.heartbeat_interval)}), "
                "or healthy workers would be presumed dead",
                "dead_after",
                "heartbeat_interval",
            )
        return self


class JobsSettings(_Section):
    default_priority: Int = 100
    max_attempts: PosInt = 3
    max_payload_bytes: ByteSize = 1_048_576
    timeout: OptInterval = None


class RetrySettings(_Section):
    base: NonNegDuration = 1.0
    cap: NonNegDuration = 300.0
    jitter: bool = True

    @model_validator(mode="after")
    def _check_cap(self) -> Self:
        if self.cap < self.base:
            raise _FieldProblem(
                f"retry.cap ({format_duration(self.cap)}) must not be shorter than "
                f"retry.base ({format_duration(self.base)})",
                "cap",
                "base",
            )
        return self


class MaintenanceSettings(_Section):
    rescue_interval: Interval = 1.0
    reconcile_interval: Interval = 2.0
    reconcile_grace: NonNegDuration = 2.0
    prune_interval: Interval = 3600.0
    retention: Interval = 7 * 86400.0
    dead_retention: Interval = 30 * 86400.0


class HealthSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 0


class ApiToken(_Section):
    name: str = Field(min_length=1)
    token: str = Field(min_length=16, repr=False)
    role: Role


class WebUser(_Section):
    username: str = Field(min_length=1)
    password_hash: str = Field(min_length=1, repr=False)
    role: Role


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
    session_secret: OptStr = Field(default=None, repr=False)
    tokens: Annotated[list[ApiToken], BeforeValidator(_parse_tokens)] = Field(
        default_factory=list, repr=False
    )
    users: list[WebUser] = Field(default_factory=list)
    secure_cookies: Annotated[Literal["auto", "always", "never"], BeforeValidator(lowercase)] = (
        "auto"
    )
    refresh_interval: Interval = 5.0

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


class ThresholdsSettings(_Section):
    warning_waiting: NonNegInt = 100
    critical_waiting: NonNegInt = 1000
    critical_failures_per_hour: NonNegInt = 10
    default_target: Interval = 300.0

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.critical_waiting < self.warning_waiting:
            raise _FieldProblem(
                f"thresholds.critical_waiting ({self.critical_waiting}) must not be below "
                f"thresholds.warning_waiting ({self.warning_waiting})",
                "critical_waiting",
                "warning_waiting",
            )
        return self


class QueueSettings(_Section):
    target: OptInterval = None
    warning_waiting: NonNegInt | None = None
    critical_waiting: NonNegInt | None = None
    critical_failures_per_hour: NonNegInt | None = None


class CircuitBreakerSettings(_Section):
    failure_threshold: PosInt = 5
    cooldown_period: Interval = 30.0
    enabled: bool = False


class EncryptionSettings(_Section):
    keys: CommaList = Field(default_factory=list, repr=False)
    fields: CommaList = Field(default_factory=list)

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, keys: list[str]) -> list[str]:
        for number, key in enumerate(keys, start=1):
            try:
                Fernet(key.encode())
            except ValueError:
                raise ValueError(
                    f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "generate one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None
        return keys


class LogSettings(_Section):
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lowercase)] = (
        "info"
    )
    format: Annotated[Literal["text", "json"], BeforeValidator(lowercase)] = "text"


# The specification's table of per-queue latency targets, in seconds.
_DEFAULT_QUEUES: dict[str, dict[str, Any]] = {
    "email-sending:high": {"target": 60.0},
    "email-sending": {"target": 300.0},
    "email-sending:low": {"target": 1800.0},
    "analytics:daily-aggregate": {"target": 3600.0},
    "warmup:process": {"target": 900.0},
}


def _default_queues() -> dict[str, QueueSettings]:
    return {name: QueueSettings.model_validate(entry) for name, entry in _DEFAULT_QUEUES.items()}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    queuer: QueuerSettings = Field(default_factory=QueuerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    thresholds: ThresholdsSettings = Field(default_factory=ThresholdsSettings)
    queues: dict[str, QueueSettings] = Field(default_factory=_default_queues)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    def queue_target(self, queue: str, lane: str | None = None) -> float:
        """Latency target in seconds: "queue:lane", then "queue", then the global default."""
        for name in ([f"{queue}:{lane}"] if lane else []) + [queue]:
            entry = self.queues.get(name)
            if entry is not None and entry.target is not None:
                return entry.target
        return self.thresholds.default_target

    def queue_thresholds(self, queue: str) -> tuple[int, int, int]:
        """(warning_waiting, critical_waiting, critical_failures_per_hour) for ``queue``."""
        entry = self.queues.get(queue) or QueueSettings()
        base = self.thresholds
        return (
            base.warning_waiting if entry.warning_waiting is None else entry.warning_waiting,
            base.critical_waiting if entry.critical_waiting is None else entry.critical_waiting,
            base.critical_failures_per_hour
            if entry.critical_failures_per_hour is None
            else entry.critical_failures_per_hour,
        )

    @model_validator(mode="after")
    def _check_queue_thresholds(self) -> Self:
        for name in self.queues:
            warning, critical, _ = self.queue_thresholds(name)
            if critical < warning:
                raise _FieldProblem(
                    f"critical_waiting ({critical}) for queue {name!r} must not be below its "
                    f"warning_waiting ({warning})",
                    ("queues", name, "critical_waiting"),
                    ("queues", name, "warning_waiting"),
                )
        return self


_SECTIONS: dict[str, type[BaseModel]] = {
    "database": DatabaseSettings,
    "redis": RedisSettings,
    "queuer": QueuerSettings,
    "worker": WorkerSettings,
    "jobs": JobsSettings,
    "retry": RetrySettings,
    "maintenance": MaintenanceSettings,
    "health": HealthSettings,
    "web": WebSettings,
    "thresholds": ThresholdsSettings,
    "circuit_breaker": CircuitBreakerSettings,
    "encryption": EncryptionSettings,
    "log": LogSettings,
}


def _file_keys(model: type[BaseModel]) -> dict[str, str]:
    """Spelling used in the file and environment -> attribute name."""
    return {
        info.validation_alias if isinstance(info.validation_alias, str) else name: name
        for name, info in model.model_fields.items()
    }


_KEYS = {section: _file_keys(model) for section, model in _SECTIONS.items()}
_FILE_ONLY = {("web", "users")}
_SECRET = {
    ("database", "url"),
    ("redis", "url"),
    ("web", "session_secret"),
    ("web", "tokens"),
    ("web", "users"),
    ("encryption", "keys"),
}

_PREFIX = "CONVEYOR_"
# Read by the CLI/loader itself rather than being settings; CONVEYOR_TEST_* belongs to the tests.
_RESERVED_ENV = frozenset({"CONVEYOR_CONFIG", "CONVEYOR_IGNORE_ENV"})
_RESERVED_ENV_PREFIX = "CONVEYOR_TEST_"
# Bare variables that share our section prefixes but belong to well-known neighbours.
_FOREIGN_ENV = frozenset(
    {
        "REDIS_VERSION",  # set by the official redis image
        "REDIS_DOWNLOAD_URL",  # ditto
        "REDIS_DOWNLOAD_SHA",  # ditto
        "REDIS_TLS_URL",  # Heroku Data for Redis
        "WEB_CONCURRENCY",  # Heroku, gunicorn, uvicorn
    }
)
# Kubernetes injects these for every Service in the namespace (a Service named "redis"
# yields REDIS_SERVICE_HOST, REDIS_PORT=tcp://..., REDIS_PORT_6379_TCP_ADDR, ...).
_SERVICE_LINK_NAME = re.compile(
    r"[A-Z0-9_]+_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)"
)
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://\S+:\d+")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Connection details people commonly export one by one; ours live in a single URL.
_URL_PARTS = {
    "database": (
        {"host", "port", "user", "username", "password", "name", "db", "dbname"},
        "put it in DATABASE_URL: postgresql://user:password@host:5432/name",
    ),
    "redis": (
        {"host", "port", "password", "db"},
        "use REDIS_ADDR=host:port, or REDIS_URL: redis://:password@host:6379/0",
    ),
}


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _record(sources: dict[Loc, str], loc: Loc, label: str) -> None:
    # A later layer replaces everything beneath the path, origins included.
    for old in [old for old in sources if old[: len(loc)] == loc]:
        del sources[old]
    sources[loc] = label


def _source_of(loc: Loc, sources: Mapping[Loc, str]) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in sources:
            return sources[loc[:end]]
    return "default"


def _suggest(word: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return close[0] if close else None


def _known_names(parent: Loc) -> list[str]:
    if not parent:
        return [*_KEYS, "queues"]
    if len(parent) == 1 and parent[0] in _KEYS:
        return list(_KEYS[str(parent[0])])
    if len(parent) == 2 and parent[0] == "queues":
        return list(QueueSettings.model_fields)
    nested = _NESTED_MODELS.get(parent[:2]) if len(parent) == 3 else None
    return list(nested.model_fields) if nested else []


_NESTED_MODELS: dict[Loc, type[BaseModel]] = {
    ("web", "tokens"): ApiToken,
    ("web", "users"): WebUser,
}


# --------------------------------------------------------------------------------------------
# Loading


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from all layers; raise ``ConfigError`` listing every problem.

    ``path`` defaults to ``$CONVEYOR_CONFIG`` if set, else no file. ``env`` defaults to
    ``os.environ``. ``overrides`` maps dotted keys (file spelling, or attribute names such as
    ``database.schema_name``) to values; ``None`` is a value like any other, so callers drop
    flags that were not given.
    """
    env = os.environ if env is None else env
    issues: list[ConfigIssue] = []
    raw: dict[str, Any] = {}
    sources: dict[Loc, str] = {}
    if path is None and env.get("CONVEYOR_CONFIG"):
        path = env["CONVEYOR_CONFIG"]
    if path is not None:
        raw = _read_file(Path(path), sources, issues)
    _apply_env(env, raw, sources, issues)
    for dotted, value in (overrides or {}).items():
        loc = _override_loc(dotted)
        if isinstance(loc, str):
            issues.append(ConfigIssue(dotted, "argument", loc))
        else:
            if loc[0] == "queues" and len(loc) > 1 and "queues" not in raw:
                raw["queues"] = _merge_queues({})  # one entry changes; the rest stay built in
            _assign(raw, loc, value)
            _record(sources, loc, "argument")
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        # pydantic's traceback adds nothing for an operator; the issues say it all.
        raise ConfigError([*issues, *_translate(exc, sources)]) from None
    if issues:
        raise ConfigError(issues)
    return settings


def _read_file(path: Path, sources: dict[Loc, str], issues: list[ConfigIssue]) -> dict[str, Any]:
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(ConfigIssue("", label, f"configuration file not found ({path.absolute()})"))
        return {}
    except UnicodeDecodeError as exc:
        issues.append(ConfigIssue("", label, f"not UTF-8 text ({exc.reason})"))
        return {}
    except OSError as exc:
        issues.append(ConfigIssue("", label, f"cannot read configuration file: {exc.strerror}"))
        return {}
    loader = yaml.SafeLoader(text)
    lines: dict[Loc, int] = {}
    try:
        root = loader.get_single_node()
        data = None if root is None else _construct(loader, root, (), lines, issues, label)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label} line {mark.line + 1}" if mark else label
        issues.append(ConfigIssue("", where, f"invalid YAML: {exc.problem or exc.context}"))
        return {}
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue("", label, f"invalid YAML: {exc}"))
        return {}
    finally:
        loader.dispose()
    if data is None:  # an empty file, or only comments
        return {}
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else f"the value {data!r}"
        message = f"must be a mapping of sections such as 'worker:', found {found}"
        issues.append(ConfigIssue("", f"{label} line 1", message))
        return {}
    for loc, line in lines.items():
        sources[loc] = f"{label} line {line}"
    # A section whose keys are all commented out reads as null: treat it as "all defaults".
    data = {section: value for section, value in data.items() if value is not None}
    if isinstance(data.get("queues"), dict):
        data["queues"] = _merge_queues(data["queues"])
    return data


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    issues: list[ConfigIssue],
    label: str,
) -> Any:
    """Like SafeLoader's constructor, but remembering each key's line and refusing duplicates."""
    if len(loc) > 32:  # a self-referencing alias would otherwise recurse forever
        raise yaml.YAMLError(f"{_dotted(loc)} is nested too deeply")
    if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_TAGS:
        # Walking collections by hand bypasses the constructor's tag checks, so refuse here.
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported tag {node.tag!r}", node.start_mark
        )
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                where = f"{label} line {line}"
                issues.append(ConfigIssue(_dotted(loc), where, "keys must be plain names"))
                continue
            child = (*loc, str(key_node.value))
            if child[-1] in mapping:
                message = f"set twice in this file (also on line {lines[child]})"
                issues.append(ConfigIssue(_dotted(child), f"{label} line {line}", message))
                continue
            lines[child] = line
            mapping[str(child[-1])] = _construct(loader, value_node, child, lines, issues, label)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            items.append(_construct(loader, item, (*loc, index), lines, issues, label))
        return items
    return loader.construct_object(node)


def _env_target(bare: str, prefix: str) -> tuple[str, tuple[str, str] | None, str | None] | None:
    """Map a variable name (``prefix`` removed) to (dotted key, (section, key), problem).

    Returns None for bare names outside every section: those are not ours to judge.
    """
    low = bare.lower()
    if "__" in low:
        section, _, key = low.partition("__")
    else:
        # No section name is another's prefix, so the first match is the only one.
        section = next((s for s in _KEYS if low.startswith(s + "_")), "")
        key = low[len(section) + 1 :] if section else low
    dotted = f"{section}.{key}" if section else key
    if section == "queues" or low == "queues" or low.startswith("queues_"):
        return dotted, None, "per-queue settings can only be set in the configuration file"
    if section not in _KEYS:
        if not prefix:
            return None
        guess = _suggest(low, [f"{s}_{k}" for s in _KEYS for k in _KEYS[s]])
        return (
            dotted,
            None,
            "no such setting" + (f" (did you mean {prefix}{guess.upper()}?)" if guess else ""),
        )
    if (section, key) in _FILE_ONLY:
        return dotted, None, "can only be set in the configuration file"
    if key not in _KEYS[section]:
        guess = _suggest(key, _KEYS[section])
        hint = f" (did you mean {prefix}{section.upper()}_{guess.upper()}?)" if guess else ""
        if not guess and section in _URL_PARTS and key in _URL_PARTS[section][0]:
            hint = f" ({_URL_PARTS[section][1]})"
        return dotted, None, "no such setting" + hint
    return dotted, (section, key), None


def _is_foreign(name: str, value: str, ignored: set[str]) -> bool:
    if name in _FOREIGN_ENV or name in ignored or _SERVICE_LINK_NAME.fullmatch(name):
        return True
    return name.endswith("_PORT") and bool(_SERVICE_LINK_VALUE.fullmatch(value.strip()))


def _apply_env(
    env: Mapping[str, str], raw: dict[str, Any], sources: dict[Loc, str], issues: list[ConfigIssue]
) -> None:
    ignored = {part.strip() for part in env.get("CONVEYOR_IGNORE_ENV", "").split(",")}
    chosen: dict[tuple[str, str], tuple[bool, str, str]] = {}  # key -> (prefixed, name, value)
    for name in sorted(env):
        if not _ENV_NAME.fullmatch(name) or name in _RESERVED_ENV:
            continue
        if name.startswith(_RESERVED_ENV_PREFIX):
            continue
        prefixed = name.startswith(_PREFIX)
        found = _env_target(name[len(_PREFIX) :], _PREFIX) if prefixed else _env_target(name, "")
        if found is None:
            continue
        dotted, target, problem = found
        if target is None or problem is not None:
            if prefixed or not _is_foreign(name, env[name], ignored):
                if not prefixed:
                    problem = f"{problem}; if this variable is meant for another program, "
                    problem += "list it in CONVEYOR_IGNORE_ENV"
                issues.append(ConfigIssue(dotted, f"environment variable {name}", str(problem)))
            continue
        value = env[name].strip()
        previous = chosen.get(target)
        if previous is not None and previous[0] == prefixed:
            if previous[2] != value:
                both = f"environment variables {previous[1]} and {name}"
                message = "set to different values; remove one"
                issues.append(ConfigIssue(".".join(target), both, message))
            continue
        if previous is None or prefixed:
            chosen[target] = (prefixed, name, value)
    for (section, key), (_, name, value) in chosen.items():
        section_raw = raw.setdefault(section, {})
        if isinstance(section_raw, dict):  # otherwise the file's bad section is reported instead
            section_raw[key] = value
            _record(sources, (section, key), f"environment variable {name}")


def _override_loc(dotted: str) -> Loc | str:
    """Path for an override key, or the reason it names no setting."""
    section, _, rest = dotted.partition(".")
    if section == "queues":
        name, _, field = rest.rpartition(".")
        if name and field in QueueSettings.model_fields:
            return ("queues", name, field)
        return ("queues", rest) if rest else ("queues",)
    if section not in _KEYS:
        return "no such section"
    if not rest:
        return (section,)
    by_attr = {attr: key for key, attr in _KEYS[section].items()}
    if rest in _KEYS[section] or rest in by_attr:
        return (section, by_attr.get(rest, rest))
    guess = _suggest(rest, _KEYS[section])
    return f"no such setting{f' (did you mean {section}.{guess}?)' if guess else ''}"


def _assign(raw: dict[str, Any], loc: Loc, value: Any) -> None:
    target = raw
    for part in loc[:-1]:
        if not isinstance(target.get(str(part)), dict):
            target[str(part)] = {}
        target = target[str(part)]
    target[str(loc[-1])] = value


def _merge_queues(given: Mapping[str, Any]) -> dict[str, Any]:
    # The file's table is merged into the built-in one, like every other section; an entry set
    # to null removes a built-in queue.
    merged: dict[str, Any] = {name: dict(entry) for name, entry in _DEFAULT_QUEUES.items()}
    for name, entry in given.items():
        if entry is None:
            merged.pop(name, None)
        elif isinstance(entry, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **entry}
        else:
            merged[name] = entry
    return merged


def _translate(exc: ValidationError, sources: Mapping[Loc, str]) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        cause = err.get("ctx", {}).get("error")
        message = err["msg"]
        if isinstance(cause, _FieldProblem):
            candidates = [(*loc, *path) for path in cause.paths]
            known = [c for c in candidates if _source_of(c, sources) != "default"]
            loc = (known or candidates)[0]
            message = str(cause)
        elif isinstance(cause, ValueError):
            message = str(cause)  # without pydantic's "Value error, " prefix
        elif err["type"] == "extra_forbidden":
            guess = _suggest(str(loc[-1]), _known_names(loc[:-1]))
            message = "unknown setting" + (f" (did you mean {guess!r}?)" if guess else "")
        elif err["type"] == "missing":
            message = "required"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = "must be a mapping of keys to values"
        value = err.get("input")
        # Echo the offending value, except secrets and what our own messages already quote.
        if (
            isinstance(value, str | int | float)
            and loc[:2] not in _SECRET
            and cause is None
            and err["type"] not in ("extra_forbidden", "missing")
        ):
            shown = repr(value)
            message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        source = _source_of(loc, sources)
        if (
            source.startswith("environment variable")
            and isinstance(value, str)
            and _SERVICE_LINK_VALUE.fullmatch(value)
        ):
            message += (
                "; this looks like a Kubernetes service link: set the CONVEYOR_-prefixed variable"
                " (which wins) or enableServiceLinks: false"
            )
        issues.append(ConfigIssue(_dotted(loc), source, message))
    return issues
