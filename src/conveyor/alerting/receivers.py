"""What each receiver type is sent: the generic webhook (signed), Slack's incoming-webhook
message and PagerDuty's Events API v2 event. docs/alerts.md shows each payload."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from conveyor.config.alerts import PagerDutyReceiver, Receiver, SlackReceiver, WebhookReceiver
from conveyor.store.alerts import ClaimedNotification
from conveyor.vocabulary import NOTIFY_RESOLVED, SEVERITY_CRITICAL

SIGNATURE_HEADER = "X-Conveyor-Signature"
TIMESTAMP_HEADER = "X-Conveyor-Timestamp"
DELIVERY_HEADER = "X-Conveyor-Delivery"
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def alert_document(n: ClaimedNotification) -> dict[str, Any]:
    return {
        "id": n.alert_id,
        "rule": n.rule,
        "queue": n.queue_name or None,
        "severity": n.severity,
        "state": n.state,
        "summary": n.summary,
        "value": n.value,
        "threshold": n.threshold,
        "fired_at": n.fired_at.isoformat(),
        "resolved_at": n.resolved_at.isoformat() if n.resolved_at else None,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>": a captured request cannot be replayed later
    with a new timestamp."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def dedup_key(schema: str, n: ClaimedNotification) -> str:
    """The same for the trigger, its repeats and its resolve: one PagerDuty incident per
    firing (the alert id is new at every firing)."""
    return f"conveyor/{schema}/{n.rule}/{n.queue_name or '-'}/{n.alert_id}"


def build_request(receiver: Receiver, n: ClaimedNotification, schema: str) -> Request:
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(n.id)}
    if isinstance(receiver, WebhookReceiver):
        document = {
            "version": PAYLOAD_VERSION,
            "event": n.transition,
            "notification_id": n.id,
            "schema": schema,
            "alert": alert_document(n),
        }
        body = orjson.dumps(document)
        if receiver.secret:
            timestamp = str(n.claimed_epoch)
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(receiver.secret, timestamp, body)
        return Request(receiver.url, body, headers)
    if isinstance(receiver, SlackReceiver):
        return Request(receiver.url, orjson.dumps(slack_message(n)), headers)
    if isinstance(receiver, PagerDutyReceiver):
        return Request(receiver.url, orjson.dumps(pagerduty_event(receiver, n, schema)), headers)
    raise TypeError(f"unknown receiver {receiver!r}")


_HEADLINE = {"fired": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}


def headline(n: ClaimedNotification) -> str:
    where = f" on {n.queue_name}" if n.queue_name else ""
    return f"[{_HEADLINE.get(n.transition, n.transition)}] {n.severity} {n.rule}{where}"


def slack_message(n: ClaimedNotification) -> dict[str, Any]:
    icon = (
        ":white_check_mark:"
        if n.transition == NOTIFY_RESOLVED
        else (":rotating_light:" if n.severity == SEVERITY_CRITICAL else ":warning:")
    )
    title = f"{icon} {headline(n)}"
    detail = f"{n.summary}\nfired {n.fired_at:%Y-%m-%d %H:%M:%S %Z}"
    if n.resolved_at is not None:
        detail += f", resolved {n.resolved_at:%Y-%m-%d %H:%M:%S %Z}"
    return {
        "text": f"{title}: {n.summary}",  # the notification and fallback text
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
        ],
    }


def pagerduty_event(
    receiver: PagerDutyReceiver, n: ClaimedNotification, schema: str
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": receiver.routing_key,
        "dedup_key": dedup_key(schema, n),
    }
    if n.transition == NOTIFY_RESOLVED:
        event["event_action"] = "resolve"
        return event
    event["event_action"] = "trigger"
    event["payload"] = {
        "summary": f"{headline(n)}: {n.summary}"[:1024],
        "source": f"conveyor/{schema}",
        "severity": n.severity,  # PagerDuty's own words: critical, warning
        "component": n.queue_name or "conveyor",
        "group": n.rule,
        "class": "conveyor-alert",
        "custom_details": alert_document(n),
    }
    return event
