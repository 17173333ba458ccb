"""What every settings module shares: the error types and the section base model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

from conveyor.durations import (
    lowercase,
)

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


def dotted(loc: Loc) -> str:
    """("queues", "email", "priority") -> "queues.email.priority"; list items as [i]."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
