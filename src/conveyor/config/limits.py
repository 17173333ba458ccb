"""The `limits` section (rates and concurrency per limit key) and the limit fields of a
queue. Checked field by field at start: a bad rate or a zero stops the process with the
key named. The queuer writes them to the `flow_limits` table (conveyor/limited_dispatch.py)."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from conveyor.config.base import _FieldProblem, _Section
from conveyor.limits import MAX_COUNT, check_limit_key, parse_rate


def _rate_text(value: Any) -> str:
    """Kept as written (it is shown back to operators), checked now."""
    parse_rate(value)
    return str(value).strip()


def _key_names(keys: dict[str, Any]) -> dict[str, Any]:
    for key in keys:
        try:
            check_limit_key(key)
        except ValueError as error:
            raise ValueError(str(error).replace("limit_key", "key", 1)) from None
    if "*" in keys:
        raise ValueError('the key "*" is limits.default_key: set that instead')
    return keys


OptRate = Annotated[str, BeforeValidator(_rate_text)] | None
OptLimit = Annotated[int, Field(ge=1, le=MAX_COUNT)] | None


class KeyLimitSettings(_Section):
    rate: OptRate = None
    concurrency: OptLimit = None

    @model_validator(mode="after")
    def _one_of_them(self) -> Self:
        if self.rate is None and self.concurrency is None:
            raise _FieldProblem("give a rate, a concurrency, or both", "rate", "concurrency")
        return self


class LimitsSettings(_Section):
    # Exact keys and fnmatch patterns (*, ?, [...]); see conveyor/limits.py for the order.
    keys: Annotated[dict[str, KeyLimitSettings], AfterValidator(_key_names)] = Field(
        default_factory=dict
    )
    # Applies to every limit key that matches no entry of `keys`.
    default_key: KeyLimitSettings | None = None
