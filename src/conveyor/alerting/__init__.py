"""Alerts: the leader evaluates the rules on the metrics history every minute, keeps each
alert's firing -> resolved lifecycle in PostgreSQL, and delivers one notification per
transition to the configured receivers (docs/alerts.md)."""

from conveyor.alerting.delivery import AlertDelivery, BackgroundDelivery
from conveyor.alerting.evaluator import AlertEvaluator

__all__ = ["AlertDelivery", "AlertEvaluator", "BackgroundDelivery"]
