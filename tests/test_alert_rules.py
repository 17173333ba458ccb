"""Every alert rule firing and resolving on fabricated history, one `run_once()` each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from conveyor.alerting import AlertEvaluator
from conveyor.config import ConfigError, Settings
from conveyor.store import Store
from conveyor.store.alerts import AppliedAlerts
from tests.factories import add_metrics_minute, add_worker, set_worker_health

Db = psycopg.Connection[Any]
RECEIVERS = [{"type": "webhook", "name": "ops", "url": "http://127.0.0.1:9/hook"}]


async def evaluate(
    settings: Settings, leader: tuple[bool, bool, str] = (False, False, "")
) -> AppliedAlerts:
    store = await Store.open(settings, "test", 2)
    try:
        return await AlertEvaluator(store, settings, lambda: leader).run_once()
    finally:
        await store.close()


def firing(db: Db, rule: str | None = None) -> dict[tuple[str, str], tuple[str, float, float]]:
    """The firing alerts (of `rule`, else of every rule)."""
    rows = db.execute(
        b"SELECT rule, queue_name, severity, value, threshold FROM alerts"
        b" WHERE state = 'firing' AND (%s::text IS NULL OR rule = %s)",
        (rule, rule),
    ).fetchall()
    return {
        (rule, queue): (severity, value, threshold)
        for rule, queue, severity, value, threshold in rows
    }


def history(db: Db) -> list[tuple[str, str, str]]:
    """(rule, queue, state) of every alert row, oldest first."""
    rows = db.execute(b"SELECT rule, queue_name, state FROM alerts ORDER BY id").fetchall()
    return [tuple(row) for row in rows]


def notifications(db: Db) -> list[tuple[str, str, str, str]]:
    rows = db.execute(
        b"SELECT a.rule, a.queue_name, n.transition, n.receiver FROM alert_notifications n"
        b" JOIN alerts a ON a.id = n.alert_id ORDER BY n.id"
    ).fetchall()
    return [tuple(row) for row in rows]


def serve(db: Db, *queues: str) -> None:
    """A live worker for `queues`, so no_workers stays quiet in tests of other rules."""
    add_worker(db, "w-serving", list(queues))


def clear_history(db: Db) -> None:
    db.execute(b"DELETE FROM metrics_minutes")


# -- each rule fires on its condition and resolves when it is gone ----------------------------


async def test_queue_backlog_fires_over_ten_thousand_and_resolves(
    settings: Settings, db: Db
) -> None:
    serve(db, "emails", "quiet")
    add_metrics_minute(db, "emails", minutes_ago=1, lane="normal", waiting=9000)
    add_metrics_minute(db, "emails", minutes_ago=1, lane="low", waiting=2000)
    add_metrics_minute(db, "quiet", minutes_ago=1, waiting=10_000)  # not over
    applied = await evaluate(settings)
    assert applied.fired == 1
    assert firing(db) == {("queue_backlog", "emails"): ("critical", 11_000, 10_000)}
    clear_history(db)
    add_metrics_minute(db, "emails", minutes_ago=1, waiting=50)
    applied = await evaluate(settings)
    assert (applied.fired, applied.resolved) == (0, 1)
    assert firing(db) == {}
    assert history(db) == [("queue_backlog", "emails", "resolved")]


async def test_failure_rate_needs_its_minimum_sample(settings: Settings, db: Db) -> None:
    # 6 of 96 attempts failed over the last five minutes (a dead attempt failed too).
    for minute in range(1, 6):
        add_metrics_minute(db, "billing", minutes_ago=minute, completed=18, failed=1)
    add_metrics_minute(db, "billing", minutes_ago=3, lane="high", dead=1)
    # 100 % of 10 attempts: under the 20-attempt minimum, not an alert.
    add_metrics_minute(db, "rare", minutes_ago=2, failed=10)
    # Failures older than the window do not count.
    add_metrics_minute(db, "old", minutes_ago=20, failed=100)
    await evaluate(settings)
    found = firing(db, "failure_rate")
    assert list(found) == [("failure_rate", "billing")]
    severity, rate, threshold = found[("failure_rate", "billing")]
    assert (severity, rate, threshold) == ("critical", 6 / 96, 0.05)
    db.execute(b"UPDATE metrics_minutes SET failed = 0 WHERE queue_name = 'billing'")
    await evaluate(settings)
    assert firing(db, "failure_rate") == {}


async def test_oldest_wait_over_the_lane_target(settings: Settings, db: Db) -> None:
    serve(db, "email-sending", "other")
    # email-sending:high has a 60 s target in the built-in table; its normal lane 300 s.
    add_metrics_minute(db, "email-sending", lane="high", waiting=3, oldest_wait=90.0)
    add_metrics_minute(db, "email-sending", lane="normal", waiting=3, oldest_wait=200.0)
    add_metrics_minute(db, "other", lane="normal", waiting=3, oldest_wait=200.0)  # 300 s default
    await evaluate(settings)
    assert firing(db) == {("oldest_wait", "email-sending"): ("warning", 90.0, 60.0)}
    db.execute(b"UPDATE metrics_minutes SET oldest_wait = 10")
    await evaluate(settings)
    assert firing(db) == {}


async def test_no_live_worker_for_a_queue_with_waiting_jobs(settings: Settings, db: Db) -> None:
    add_metrics_minute(db, "reports", waiting=5)
    add_metrics_minute(db, "served", waiting=5)
    add_metrics_minute(db, "empty", waiting=0)
    add_worker(db, "w-served", ["served"])
    add_worker(db, "w-silent", ["reports"], silent_for=600)  # presumed dead
    add_worker(db, "w-stopped", ["reports"], stopped=True)
    await evaluate(settings)
    assert firing(db) == {("no_workers", "reports"): ("critical", 5, 0)}
    add_worker(db, "w-reports", ["reports", "other"])
    await evaluate(settings)
    assert firing(db) == {}


async def test_dead_letter_growth_in_the_window(settings: Settings, db: Db) -> None:
    add_metrics_minute(db, "imports", minutes_ago=10, dead=2)
    add_metrics_minute(db, "long-ago", minutes_ago=30, dead=5)  # outside 15 minutes
    await evaluate(settings)
    assert firing(db) == {("dead_letter_growth", "imports"): ("warning", 2, 1)}
    db.execute(b"UPDATE metrics_minutes SET bucket = bucket - interval '1 hour'")
    await evaluate(settings)
    assert firing(db) == {}


async def test_circuit_breaker_open_in_a_live_worker(settings: Settings, db: Db) -> None:
    add_worker(db, "w1", ["payments", "emails"])
    add_worker(db, "w2", ["payments"])
    set_worker_health(db, "w1", breakers_open=("payments",))
    set_worker_health(db, "w2", breakers_open=("payments",))
    await evaluate(settings)
    assert firing(db) == {("circuit_open", "payments"): ("warning", 2, 0)}
    set_worker_health(db, "w1")
    set_worker_health(db, "w2")
    await evaluate(settings)
    assert firing(db) == {}


async def test_postgres_only_in_a_worker_or_the_leader(settings: Settings, db: Db) -> None:
    add_worker(db, "w1", ["q"])
    set_worker_health(db, "w1", postgres_only=True)
    await evaluate(settings)
    assert firing(db) == {("postgres_only", ""): ("warning", 1, 0)}
    set_worker_health(db, "w1")
    await evaluate(settings, leader=(True, False, "redis://r:6379/0"))
    assert firing(db) == {("postgres_only", ""): ("warning", 1, 0)}
    await evaluate(settings)
    assert firing(db) == {}
    assert history(db) == [("postgres_only", "", "resolved")]


async def test_redis_failover_while_the_leader_uses_a_backup(settings: Settings, db: Db) -> None:
    await evaluate(settings, leader=(False, True, "redis://backup:6379/0"))
    assert firing(db) == {("redis_failover", ""): ("warning", 1, 0)}
    summary = db.execute(b"SELECT summary FROM alerts").fetchone()
    assert summary is not None and "redis://backup:6379/0" in summary[0]
    await evaluate(settings)
    assert firing(db) == {}


# -- configuration: per queue, globally, off ----------------------------------------------------


async def test_rules_are_configured_per_queue_and_switched_off(
    settings: Settings, settings_factory: Callable[..., Settings], db: Db
) -> None:
    configured = settings_factory(
        **{
            "alerts.rules": {"queue_backlog": {"threshold": 1000, "severity": "warning"}},
            "queues": {
                "billing": {
                    "alerts": {"queue_backlog": {"threshold": 100, "severity": "critical"}}
                },
                "noisy": {"alerts": {"queue_backlog": {"enabled": False}}},
            },
        }
    )
    serve(db, "billing", "noisy", "other", "small")
    for queue in ("billing", "noisy", "other", "small"):
        add_metrics_minute(db, queue, waiting=500 if queue == "small" else 2000)
    await evaluate(configured)
    assert firing(db) == {
        ("queue_backlog", "billing"): ("critical", 2000, 100),
        ("queue_backlog", "other"): ("warning", 2000, 1000),
    }


async def test_a_level_rule_holds_in_every_minute_of_its_window(
    settings: Settings, settings_factory: Callable[..., Settings], db: Db
) -> None:
    configured = settings_factory(**{"alerts.rules": {"queue_backlog": {"window": "3m"}}})
    serve(db, "spiky", "stuck")
    for minute, waiting in ((1, 20_000), (2, 20_000), (3, 500)):  # one quiet minute
        add_metrics_minute(db, "spiky", minutes_ago=minute, waiting=waiting)
    for minute in (1, 2, 3):
        add_metrics_minute(db, "stuck", minutes_ago=minute, waiting=20_000)
    await evaluate(configured)
    assert list(firing(db)) == [("queue_backlog", "stuck")]


def test_bad_alert_settings_are_refused_naming_the_field(
    settings_factory: Callable[..., Settings],
) -> None:
    cases = [
        ({"alerts.rules": {"queue_backlogg": {"threshold": 1}}}, "alerts.rules.queue_backlogg"),
        ({"alerts.rules": {"failure_rate": {"severity": "loud"}}}, "severity"),
        ({"alerts.receivers": [{"type": "slack", "url": "ftp://x"}]}, "alerts.receivers[0]"),
        ({"alerts.receivers": [{"type": "email", "url": "http://x"}]}, "alerts.receivers[0]"),
        (
            {"alerts.receivers": [{"type": "pagerduty", "routing_key": "k"}] * 2},
            "alerts.receivers[1].name",
        ),
        ({"queues": {"q": {"alerts": {"no_workers": {"window": "-1s"}}}}}, "queues.q.alerts"),
    ]
    for overrides, where in cases:
        with pytest.raises(ConfigError) as caught:
            settings_factory(**overrides)
        assert where in str(caught.value), str(caught.value)
    with pytest.raises(ConfigError) as caught:
        settings_factory(**{"alerts.receivers": [{"type": "slack", "url": "ftp://secret-hook"}]})
    assert "secret-hook" not in str(caught.value)


# -- the lifecycle: one notification per transition ------------------------------------------


async def test_one_notification_per_transition_and_receiver(
    settings: Settings, settings_factory: Callable[..., Settings], db: Db
) -> None:
    receivers = [*RECEIVERS, {"type": "slack", "url": "http://127.0.0.1:9/slack"}]
    configured = settings_factory(**{"alerts.receivers": receivers})
    serve(db, "emails")
    add_metrics_minute(db, "emails", waiting=20_000)
    for _ in range(3):
        await evaluate(configured)
    assert notifications(db) == [
        ("queue_backlog", "emails", "fired", "ops"),
        ("queue_backlog", "emails", "fired", "slack"),
    ]
    clear_history(db)
    for _ in range(3):
        await evaluate(configured)
    assert notifications(db)[2:] == [
        ("queue_backlog", "emails", "resolved", "ops"),
        ("queue_backlog", "emails", "resolved", "slack"),
    ]
    # Firing again is a new alert with its own history.
    add_metrics_minute(db, "emails", waiting=20_000)
    await evaluate(configured)
    assert history(db) == [
        ("queue_backlog", "emails", "resolved"),
        ("queue_backlog", "emails", "firing"),
    ]
    assert len(notifications(db)) == 6


async def test_a_long_firing_alert_repeats_after_the_repeat_interval(
    settings: Settings, settings_factory: Callable[..., Settings], db: Db
) -> None:
    configured = settings_factory(**{"alerts.receivers": RECEIVERS, "alerts.repeat_interval": "1h"})
    serve(db, "emails")
    add_metrics_minute(db, "emails", waiting=20_000)
    await evaluate(configured)
    await evaluate(configured)
    assert [n[2] for n in notifications(db)] == ["fired"]
    db.execute(b"UPDATE alerts SET last_notified_at = now() - interval '61 minutes'")
    applied = await evaluate(configured)
    assert applied.repeated == 1
    await evaluate(configured)
    assert [n[2] for n in notifications(db)] == ["fired", "repeat"]
    never = settings_factory(**{"alerts.receivers": RECEIVERS, "alerts.repeat_interval": 0})
    db.execute(b"UPDATE alerts SET last_notified_at = now() - interval '100 days'")
    await evaluate(never)
    assert [n[2] for n in notifications(db)] == ["fired", "repeat"]


async def test_firing_alerts_are_a_gauge(settings: Settings, db: Db) -> None:
    def gauge() -> float | None:
        labels = {"rule": "no_workers", "queue": "gauged", "severity": "critical"}
        return REGISTRY.get_sample_value("alerts_firing", labels)

    add_metrics_minute(db, "gauged", waiting=1)
    store = await Store.open(settings, "test", 2)
    try:
        evaluator = AlertEvaluator(store, settings)
        await evaluator.run_once()
        assert gauge() == 1
        clear_history(db)
        await evaluator.run_once()
        assert gauge() == 0
    finally:
        await store.close()


async def test_resolved_alerts_are_pruned_after_retention(settings: Settings, db: Db) -> None:
    for queue, resolved_days_ago in (("recent", 1), ("old", 8)):
        db.execute(
            b"INSERT INTO alerts (rule, queue_name, severity, state, summary, fired_at,"
            b" resolved_at) VALUES ('queue_backlog', %s, 'critical', 'resolved', 'x',"
            b" now() - interval '10 days', now() - %s * interval '1 day')",
            (queue, resolved_days_ago),
        )
    db.execute(
        b"INSERT INTO alerts (rule, queue_name, severity, state, summary, fired_at)"
        b" VALUES ('circuit_open', 'stuck', 'warning', 'firing', 'x', now() - interval '90 days')"
    )
    add_worker(db, "w", ["stuck"])
    set_worker_health(db, "w", breakers_open=("stuck",))  # still firing
    await evaluate(settings)
    assert history(db) == [
        ("queue_backlog", "recent", "resolved"),
        ("circuit_open", "stuck", "firing"),
    ]


async def test_an_evaluator_that_stops_leading_clears_its_gauges(
    settings: Settings, db: Db
) -> None:
    labels = {"rule": "no_workers", "queue": "handed-over", "severity": "critical"}
    add_metrics_minute(db, "handed-over", waiting=1)
    store = await Store.open(settings, "test", 2)
    try:
        evaluator = AlertEvaluator(store, settings)
        await evaluator.run_once()
        assert REGISTRY.get_sample_value("alerts_firing", labels) == 1
        evaluator.clear_gauges()
        assert REGISTRY.get_sample_value("alerts_firing", labels) == 0
    finally:
        await store.close()
