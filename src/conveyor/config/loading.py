"""Conveyor settings: defaults < YAML file < environment variables < explicit overrides.

pydantic-settings' own sources are not used: every error has to say where the bad value came
from (file line, variable name), bare and ``CONVEYOR_``-prefixed variables must both work with
the prefixed one winning, and variables that look like ours but match nothing must be reported.
So the layers are merged into one plain dict with a parallel map of origins and validated once.
``Settings`` stays a plain model, which keeps ``Settings()`` equal to the pure defaults.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from conveyor.config.base import Loc, _FieldProblem, dotted
from conveyor.config.limits import KeyLimitSettings
from conveyor.config.models import (
    _DEFAULT_QUEUES,
    _SECTIONS,
    ApiToken,
    ConfigError,
    ConfigIssue,
    QueueSettings,
    SentinelSettings,
    Settings,
    WebUser,
)
from conveyor.config.schedules import ScheduleSettings
from conveyor.config.yaml_file import read_file


def _file_keys(model: type[BaseModel]) -> dict[str, str]:
    """Spelling used in the file and environment -> attribute name."""
    return {
        info.validation_alias if isinstance(info.validation_alias, str) else name: name
        for name, info in model.model_fields.items()
    }


_KEYS = {section: _file_keys(model) for section, model in _SECTIONS.items()}
_FILE_ONLY = {
    ("web", "users"),
    ("redis", "sentinel"),
    ("alerts", "rules"),
    ("alerts", "receivers"),
    ("limits", "keys"),
    ("limits", "default_key"),
}
# Names the specification (BACKUP_REDIS_URL) and Sentinel deployments use, mapped onto our
# settings; they work bare and with the CONVEYOR_ prefix like every other variable.
_ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "backup_redis_url": ("redis", "failover_urls"),
    "redis_sentinel_nodes": ("redis", "sentinel", "nodes"),
    "redis_sentinel_service": ("redis", "sentinel", "service"),
}
_SECRET = {
    ("database", "url"),
    ("database", "direct_url"),
    ("redis", "url"),
    ("redis", "failover_urls"),
    ("web", "session_secret"),
    ("web", "tokens"),
    ("web", "users"),
    ("encryption", "keys"),
    ("alerts", "receivers"),
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
        return [*_KEYS, "queues", "schedules"]
    if len(parent) == 1 and parent[0] in _KEYS:
        return list(_KEYS[str(parent[0])])
    if len(parent) == 2 and parent[0] == "queues":
        return list(QueueSettings.model_fields)
    if len(parent) == 2 and parent[0] == "schedules":
        return list(ScheduleSettings.model_fields)
    if parent == ("redis", "sentinel"):
        return list(SentinelSettings.model_fields)
    nested = _NESTED_MODELS.get(parent[:2]) if len(parent) == 3 else None
    return list(nested.model_fields) if nested else []


_NESTED_MODELS: dict[Loc, type[BaseModel]] = {
    ("web", "tokens"): ApiToken,
    ("web", "users"): WebUser,
    ("limits", "keys"): KeyLimitSettings,
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
        raw = read_file(Path(path), sources, issues)
        if isinstance(raw.get("queues"), dict):
            raw["queues"] = _merge_queues(raw["queues"])
    _apply_env(env, raw, sources, issues)
    for key, value in (overrides or {}).items():
        loc = _override_loc(key)
        if isinstance(loc, str):
            issues.append(ConfigIssue(key, "argument", loc))
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


def _env_target(bare: str, prefix: str) -> tuple[str, tuple[str, ...] | None, str | None] | None:
    """Map a variable name (``prefix`` removed) to (dotted key, path of the setting, problem).

    Returns None for bare names outside every section: those are not ours to judge.
    """
    low = bare.lower()
    if low in _ENV_ALIASES:
        path = _ENV_ALIASES[low]
        return ".".join(path), path, None
    if "__" in low:
        section, _, key = low.partition("__")
    else:
        # No section name is another's prefix, so the first match is the only one.
        section = next((s for s in _KEYS if low.startswith(s + "_")), "")
        key = low[len(section) + 1 :] if section else low
    dotted = f"{section}.{key}" if section else key
    if section == "queues" or low == "queues" or low.startswith("queues_"):
        return dotted, None, "per-queue settings can only be set in the configuration file"
    if low == "schedules" or low.startswith("schedules_"):
        return dotted, None, "schedules can only be defined in the configuration file"
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
    chosen: dict[tuple[str, ...], tuple[bool, str, str]] = {}  # path -> (prefixed, name, value)
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
            # A Service named conveyor-* makes Kubernetes inject CONVEYOR_*_SERVICE_HOST,
            # CONVEYOR_*_PORT=tcp://... and the like: service links, not typos, whatever
            # their prefix.
            if not _is_foreign(name, env[name], ignored):
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
    for path, (_, name, value) in chosen.items():
        section_raw = raw.setdefault(path[0], {})
        if isinstance(section_raw, dict):  # otherwise the file's bad section is reported instead
            _assign(raw, path, value)
            _record(sources, path, f"environment variable {name}")


def _override_loc(dotted: str) -> Loc | str:
    """Path for an override key, or the reason it names no setting."""
    section, _, rest = dotted.partition(".")
    if section == "queues":
        name, _, field = rest.rpartition(".")
        if name and field in QueueSettings.model_fields:
            return ("queues", name, field)
        return ("queues", rest) if rest else ("queues",)
    if section == "schedules":
        return ("schedules", *rest.split(".", 1)) if rest else ("schedules",)
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
                "; this looks like a Kubernetes service link: set enableServiceLinks: false on"
                " the pod, or set the CONVEYOR_-prefixed variable, which wins over a bare one"
            )
        issues.append(ConfigIssue(dotted(loc), source, message))
    return issues
