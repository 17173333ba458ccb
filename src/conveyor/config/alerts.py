"""The `alerts` section: which rules the leader evaluates, their thresholds, and where
notifications go.

Every rule has a default (`RULE_DEFAULTS`, the specification's values); `alerts.rules`
changes it for every queue and `queues.<name>.alerts` for one queue, field by field, so
`{enabled: false}` switches a rule off and `{threshold: 50000}` only moves the threshold.
docs/alerts.md explains each rule.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, model_validator

from conveyor.config.base import _FieldProblem, _Section
from conveyor.durations import Interval, NonNegDuration, NonNegInt, OptInterval, lowercase

Severity = Annotated[Literal["warning", "critical"], BeforeValidator(lowercase)]

QUEUE_BACKLOG = "queue_backlog"
FAILURE_RATE = "failure_rate"
OLDEST_WAIT = "oldest_wait"
NO_WORKERS = "no_workers"
DEAD_LETTER_GROWTH = "dead_letter_growth"
CIRCUIT_OPEN = "circuit_open"
POSTGRES_ONLY = "postgres_only"
REDIS_FAILOVER = "redis_failover"
# Rules about the whole system rather than one queue: their alerts have queue "".
SYSTEM_RULES = (POSTGRES_ONLY, REDIS_FAILOVER)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule as it applies to one queue, every field resolved."""

    enabled: bool
    threshold: float
    window: float  # seconds of history the rule looks at
    severity: Literal["warning", "critical"]
    min_sample: int = 0


RULE_DEFAULTS: dict[str, Rule] = {
    # The specification's level: a backlog this deep is an incident whatever the queue.
    QUEUE_BACKLOG: Rule(True, 10_000, 60.0, "critical"),
    # 5 % of finished attempts over 5 minutes; below 20 attempts one failure is 5 %.
    FAILURE_RATE: Rule(True, 0.05, 300.0, "critical", min_sample=20),
    # The threshold is a factor of the lane's latency target (1: the target itself).
    OLDEST_WAIT: Rule(True, 1.0, 60.0, "warning"),
    # Jobs waiting in a queue no live worker serves: they will never run by themselves.
    NO_WORKERS: Rule(True, 0, 60.0, "critical"),
    # Any new dead job: nothing retries it any more, a person must replay or purge it.
    # It resolves once a whole window passes without one.
    DEAD_LETTER_GROWTH: Rule(True, 1, 900.0, "warning"),
    CIRCUIT_OPEN: Rule(True, 0, 60.0, "warning"),
    POSTGRES_ONLY: Rule(True, 0, 60.0, "warning"),
    REDIS_FAILOVER: Rule(True, 0, 60.0, "warning"),
}
RULES = tuple(RULE_DEFAULTS)


class RuleSettings(_Section):
    """Changes to one rule; a field left out keeps the value from the level above."""

    enabled: bool | None = None
    threshold: Annotated[float, Field(ge=0)] | None = None
    window: OptInterval = None
    severity: Severity | None = None
    min_sample: NonNegInt | None = None

    def over(self, rule: Rule) -> Rule:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return dataclasses.replace(rule, **given)


class RuleOverrides(_Section):
    """One optional entry per rule (an unknown rule name is an error naming it)."""

    queue_backlog: RuleSettings | None = None
    failure_rate: RuleSettings | None = None
    oldest_wait: RuleSettings | None = None
    no_workers: RuleSettings | None = None
    dead_letter_growth: RuleSettings | None = None
    circuit_open: RuleSettings | None = None
    postgres_only: RuleSettings | None = None
    redis_failover: RuleSettings | None = None

    def get(self, rule: str) -> RuleSettings | None:
        value: RuleSettings | None = getattr(self, rule)
        return value


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never echo it: Slack's URL is itself the credential.
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


Url = Annotated[str, AfterValidator(_check_url)]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


class WebhookReceiver(_Section):
    """A generic JSON POST; with a secret, signed with HMAC-SHA256 (docs/alerts.md)."""

    type: Literal["webhook"]
    name: Name | None = None
    url: Url = Field(repr=False)
    secret: str | None = Field(default=None, min_length=16, repr=False)


class SlackReceiver(_Section):
    type: Literal["slack"]
    name: Name | None = None
    url: Url = Field(repr=False)


PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyReceiver(_Section):
    type: Literal["pagerduty"]
    name: Name | None = None
    routing_key: str = Field(min_length=1, repr=False)
    url: Url = PAGERDUTY_EVENTS_URL


def _receiver_type(value: object) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


Receiver = Annotated[
    Annotated[WebhookReceiver, Tag("webhook")]
    | Annotated[SlackReceiver, Tag("slack")]
    | Annotated[PagerDutyReceiver, Tag("pagerduty")],
    Discriminator(
        _receiver_type,
        custom_error_type="receiver_type",
        custom_error_message="type must be webhook, slack or pagerduty",
    ),
]


def receiver_name(receiver: Receiver) -> str:
    return receiver.name or receiver.type


class AlertSettings(_Section):
    enabled: bool = True
    evaluate_interval: Interval = 60.0
    # A firing alert is announced again this often; 0 announces it only when it fires.
    repeat_interval: NonNegDuration = 4 * 3600.0
    rules: RuleOverrides = Field(default_factory=RuleOverrides)
    receivers: list[Receiver] = Field(default_factory=list)
    # Delivery: a failed POST is tried again after backoff, doubling up to backoff_cap,
    # until max_attempts; each POST may take at most send_timeout.
    send_timeout: Interval = 5.0
    backoff: Interval = 5.0
    backoff_cap: Interval = 600.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    delivery_interval: Interval = 1.0

    @model_validator(mode="after")
    def _check_receivers(self) -> Self:
        seen: set[str] = set()
        for index, receiver in enumerate(self.receivers):
            name = receiver_name(receiver)
            if name in seen:
                raise _FieldProblem(
                    f"receiver name {name!r} is used twice: give each receiver its own name",
                    ("receivers", index, "name"),
                )
            seen.add(name)
        return self

    def receiver(self, name: str) -> Receiver | None:
        return next((r for r in self.receivers if receiver_name(r) == name), None)

    def receiver_names(self) -> list[str]:
        return [receiver_name(r) for r in self.receivers]

    def rule(self, name: str, queue_overrides: RuleOverrides | None = None) -> Rule:
        """`name` as it applies to a queue with `queue_overrides` (defaults < alerts.rules <
        queues.<queue>.alerts)."""
        rule = RULE_DEFAULTS[name]
        for overrides in (self.rules, queue_overrides):
            entry = overrides.get(name) if overrides is not None else None
            if entry is not None:
                rule = entry.over(rule)
        return rule
