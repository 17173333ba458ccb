"""Limits as written by people: rate strings, configuration sections, task declarations
and key patterns. No database, no processes."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.app import Conveyor
from conveyor.config import ConfigError, Settings, load_settings
from conveyor.limited_dispatch import configured_limits
from conveyor.limits import (
    Candidate,
    Limit,
    LimitBook,
    Rate,
    Usage,
    budget,
    check_limit_key,
    check_scope,
    parse_rate,
    pick,
)


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("100/s", 100, 1.0),
        ("20/m", 20, 60.0),
        ("1000/h", 1000, 3600.0),
        ("5/10s", 5, 10.0),
        (" 3 / 2m ", 3, 120.0),
        ("1/d", 1, 86400.0),
        ("7/1.5s", 7, 1.5),
    ],
)
def test_rates_parse(text: str, count: int, period: float) -> None:
    assert parse_rate(text) == Rate(count, period)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("100", "write N/unit"),
        ("100/x", "write N/unit"),
        ("-1/s", "write N/unit"),
        ("0/s", "count must be from 1"),
        ("5/0s", "period must be from 1 s"),
        ("5/500ms", "write N/unit"),
        ("5/2d", "period must be from 1 s to 1 day"),
        ("ten/s", "write N/unit"),
    ],
)
def test_bad_rates_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_rate(text)


def test_rates_print_as_written() -> None:
    assert [str(parse_rate(text)) for text in ("100/s", "20/m", "5/10s", "3/2h")] == [
        "100/s",
        "20/m",
        "5/10s",
        "3/2h",
    ]


def load(**overrides: Any) -> Settings:
    return load_settings(None, env={}, overrides=overrides)


def test_configured_limits_become_rows() -> None:
    settings = load(
        **{
            "queues.mail.rate_limit": "10/s",
            "queues.mail.concurrency_limit": 4,
            "limits.keys": {"example.com": {"rate": "10/s", "concurrency": 5}},
            "limits.default_key": {"rate": "20/m"},
        }
    )
    assert configured_limits(settings) == [
        Limit("queue:mail", Rate(10, 1.0), 4),
        Limit("key:example.com", Rate(10, 1.0), 5),
        Limit("key:*", Rate(20, 60.0), None),
    ]
    assert configured_limits(Settings()) == []


@pytest.mark.parametrize(
    ("overrides", "key", "problem"),
    [
        ({"queues.mail.rate_limit": "fast"}, "queues.mail.rate_limit", "invalid rate"),
        ({"queues.mail.concurrency_limit": 0}, "queues.mail.concurrency_limit", "greater than"),
        ({"queues.mail.concurrency_limit": -2}, "queues.mail.concurrency_limit", "greater than"),
        ({"limits.keys": {"a": {"rate": "1/y"}}}, "limits.keys.a.rate", "invalid rate"),
        ({"limits.keys": {"a": {}}}, "limits.keys.a.rate", "give a rate, a concurrency"),
        ({"limits.keys": {"a": {"burst": 3}}}, "limits.keys.a.burst", "unknown setting"),
        ({"limits.keys": {"*": {"concurrency": 1}}}, "limits.keys", "limits.default_key"),
        ({"limits.keys": {"a\tb": {"concurrency": 1}}}, "limits.keys", "control characters"),
        ({"limits.default_key": {"concurrency": 0}}, "limits.default_key.concurrency", ""),
    ],
)
def test_bad_limits_name_the_field(overrides: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**overrides)
    issues = caught.value.errors
    assert [issue.key for issue in issues] == [key], issues
    assert problem in issues[0].message


def test_limits_cannot_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="configuration file"):
        load_settings(None, env={"LIMITS_KEYS": "{}"})


def test_task_limits_are_checked_when_declared() -> None:
    app = Conveyor(Settings())

    @app.task(rate_limit="5/10s", concurrency_limit=2)
    def sender(payload: Any) -> None: ...

    assert sender.limit == Limit(f"task:{sender.name}", Rate(5, 10.0), 2)
    with pytest.raises(ValueError, match="invalid rate"):
        app.task(name="bad", rate_limit="5 per second")(sender.func)
    with pytest.raises(ValueError, match="concurrency limit must be a positive integer"):
        app.task(name="worse", concurrency_limit=0)(sender.func)
    assert "bad" not in app.tasks and "worse" not in app.tasks


def test_keys_and_scopes_are_checked() -> None:
    assert check_limit_key("example.com") == "example.com"
    for bad in ("", "x" * 201, "a\nb", 7):
        with pytest.raises(ValueError, match="limit_key"):
            check_limit_key(bad)
    assert check_scope("key:*.gmail.com") == "key:*.gmail.com"
    for bad in ("mail", "lane:mail", "queue:", "key:"):
        with pytest.raises(ValueError):
            check_scope(bad)


def test_exact_keys_win_then_the_most_specific_pattern() -> None:
    book = LimitBook(
        [
            Limit("key:*", None, 1),
            Limit("key:*.com", None, 2),
            Limit("key:*.gmail.com", None, 3),
            Limit("key:mx?.gmail.com", None, 4),
            Limit("key:a.gmail.com", None, 5),
        ]
    )

    def concurrency(key: str) -> int | None:
        limit = book.for_key(key)
        assert limit is not None and limit.scope == f"key:{key}"  # each key its own budget
        return limit.concurrency

    assert concurrency("a.gmail.com") == 5
    assert concurrency("mx1.gmail.com") == 4
    assert concurrency("b.gmail.com") == 3
    assert concurrency("example.com") == 2
    assert concurrency("example.org") == 1
    assert LimitBook([Limit("key:*.com", None, 2)]).for_key("example.org") is None


def test_budgets_and_picks() -> None:
    rate = Limit("queue:q", Rate(10, 1.0), None)
    assert budget(rate, Usage("queue:q", 4, 3, 5, 0.5)) == 2  # 10 - (5 started + 3 sent)
    slots = Limit("key:k", None, 3)
    assert budget(slots, Usage("key:k", 5, 0, 0, None)) == 0
    assert budget(slots, None) == 3

    book = LimitBook([Limit("key:*", None, 1), Limit("task:slow", None, 1)])
    jobs = [
        Candidate(1, "q", "t", "a", 0, 1),
        Candidate(2, "q", "t", "a", 0, 2),
        Candidate(3, "q", "slow", "b", 5, 1),
        Candidate(4, "q", "slow", "c", 5, 2),
        Candidate(5, "q", "t", None, 9, 1),
    ]
    budgets = {"key:a": 1, "key:b": 1, "key:c": 1, "task:slow": 1, "task:t": 10**6}
    budgets["queue:q"] = 10**6
    chosen = pick(jobs, book, budgets, {"q": 100}, batch=500)
    assert [p.candidate.id for p in chosen] == [1, 3, 5]
    assert pick(jobs, book, budgets, {"q": 2}, batch=500)[-1].candidate.id == 3
