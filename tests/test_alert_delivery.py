"""Alert notifications delivered to a local HTTP receiver the test starts: each receiver's
payload, the webhook's signature, retries after a 500, one notification per transition."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from conveyor.alerting import AlertDelivery, AlertEvaluator, BackgroundDelivery
from conveyor.config import Settings
from conveyor.queuer import Queuer
from conveyor.store import Store
from tests.conftest import wait_until
from tests.factories import add_metrics_minute, add_worker

Db = psycopg.Connection[Any]
SECRET = "a-webhook-secret-of-some-length"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on a free loopback port: records every POST and answers with the
    next scripted status for its path (200 once the script runs out)."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    hold: threading.Event | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = state["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if me.hold is not None:
                me.hold.wait(10)
            me.received.append(Received(self.path, dict(self.headers.items()), body))
            pending = me.script.get(self.path) or []
            status = pending.pop(0) if pending else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["receiver"]
    if state["receiver"].hold is not None:
        state["receiver"].hold.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 4)
    yield opened
    await opened.close()


def configured(
    settings_factory: Callable[..., Settings], receiver: Receiver, **overrides: Any
) -> Settings:
    receivers = [
        {"type": "webhook", "name": "ops", "url": f"{receiver.url}/hook", "secret": SECRET},
        {"type": "slack", "url": f"{receiver.url}/slack"},
        {"type": "pagerduty", "routing_key": "R0UT1NG", "url": f"{receiver.url}/pd"},
    ]
    return settings_factory(**{"alerts.receivers": receivers, **overrides})


async def cycle(store: Store, settings: Settings) -> int:
    """One evaluation and one delivery pass; the count delivered."""
    await AlertEvaluator(store, settings).run_once()
    delivery = AlertDelivery(store, settings)
    try:
        return await delivery.run_once()
    finally:
        await delivery.close()


def make_backlog(db: Db) -> None:
    add_worker(db, "w", ["emails"])
    add_metrics_minute(db, "emails", waiting=12_345)


async def test_each_receiver_gets_its_payload_once_per_transition(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    store: Store,
    db: Db,
    receiver: Receiver,
) -> None:
    conf = configured(settings_factory, receiver)
    make_backlog(db)
    assert await cycle(store, conf) == 3
    for _ in range(2):  # evaluated again while still firing: nothing new is sent
        assert await cycle(store, conf) == 0
    db.execute(b"DELETE FROM metrics_minutes")
    assert await cycle(store, conf) == 3
    assert await cycle(store, conf) == 0
    hooks, slack, pd = receiver.on("/hook"), receiver.on("/slack"), receiver.on("/pd")
    assert (len(hooks), len(slack), len(pd)) == (2, 2, 2)

    # The generic webhook: the alert, the transition, a signature over timestamp and body.
    fired, resolved = hooks
    assert [fired.json["event"], resolved.json["event"]] == ["fired", "resolved"]
    alert = fired.json["alert"]
    assert (alert["rule"], alert["queue"], alert["severity"]) == (
        "queue_backlog",
        "emails",
        "critical",
    )
    assert (alert["value"], alert["threshold"]) == (12_345, 10_000)
    assert resolved.json["alert"]["state"] == "resolved" and resolved.json["alert"]["resolved_at"]
    for request in hooks:
        timestamp = request.headers["X-Conveyor-Timestamp"]
        mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
        assert request.headers["X-Conveyor-Signature"] == "sha256=" + mac.hexdigest()
        assert request.headers["Content-Type"] == "application/json"
    assert fired.headers["X-Conveyor-Delivery"] != resolved.headers["X-Conveyor-Delivery"]

    # Slack: text for the notification, blocks for the message.
    for request, word in zip(slack, ("FIRING", "RESOLVED"), strict=True):
        message = request.json
        assert word in message["text"] and "12345 jobs waiting in emails" in message["text"]
        assert [block["type"] for block in message["blocks"]] == ["section", "section"]
        assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "X-Conveyor-Signature" not in slack[0].headers

    # PagerDuty Events API v2: trigger then resolve, one dedup key.
    trigger, resolve = (request.json for request in pd)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NG"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["component"] == "emails"
    assert "12345" in trigger["payload"]["summary"] and trigger["payload"]["source"]
    assert "payload" not in resolve


async def test_a_500_is_retried_with_backoff_and_delivered_once(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    store: Store,
    db: Db,
    receiver: Receiver,
) -> None:
    conf = configured(settings_factory, receiver, **{"alerts.backoff": "30s"})
    receiver.script["/hook"] = [500]
    make_backlog(db)
    assert await cycle(store, conf) == 2  # Slack and PagerDuty; the webhook failed
    row = db.execute(
        b"SELECT attempts, delivered_at IS NULL, last_error,"
        b" next_attempt_at > now() + interval '25 seconds'"
        b" FROM alert_notifications WHERE receiver = 'ops'"
    ).fetchone()
    assert row == (1, True, "HTTP 500: ok", True)
    assert await cycle(store, conf) == 0  # not due yet
    db.execute(b"UPDATE alert_notifications SET next_attempt_at = now() WHERE receiver = 'ops'")
    assert await cycle(store, conf) == 1
    assert await cycle(store, conf) == 0
    row = db.execute(
        b"SELECT attempts, delivered_at IS NOT NULL, last_error"
        b" FROM alert_notifications WHERE receiver = 'ops'"
    ).fetchone()
    assert row == (2, True, None)
    assert len(receiver.on("/hook")) == 2  # the 500, then the delivery
    assert receiver.on("/hook")[0].body == receiver.on("/hook")[1].body


async def test_delivery_gives_up_after_max_attempts_and_keeps_the_error(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    store: Store,
    db: Db,
    receiver: Receiver,
) -> None:
    conf = configured(settings_factory, receiver, **{"alerts.max_attempts": 2})
    receiver.script["/pd"] = [503, 502]
    make_backlog(db)
    await cycle(store, conf)
    db.execute(b"UPDATE alert_notifications SET next_attempt_at = now()")
    await cycle(store, conf)
    db.execute(b"UPDATE alert_notifications SET next_attempt_at = now()")
    await cycle(store, conf)
    row = db.execute(
        b"SELECT attempts, gave_up_at IS NOT NULL, delivered_at IS NULL, last_error"
        b" FROM alert_notifications WHERE receiver = 'pagerduty'"
    ).fetchone()
    assert row == (2, True, True, "HTTP 502: ok")
    assert len(receiver.on("/pd")) == 2


async def test_a_resolve_never_overtakes_its_trigger(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    store: Store,
    db: Db,
    receiver: Receiver,
) -> None:
    conf = configured(settings_factory, receiver)
    receiver.script["/pd"] = [500]
    make_backlog(db)
    await cycle(store, conf)  # the trigger fails and waits for its retry
    db.execute(b"DELETE FROM metrics_minutes")
    await cycle(store, conf)  # the resolve is queued, but waits for the trigger
    assert [r.json["event_action"] for r in receiver.on("/pd")] == ["trigger"]
    db.execute(b"UPDATE alert_notifications SET next_attempt_at = now()")
    await cycle(store, conf)  # the trigger goes now; the resolve on the next pass
    await cycle(store, conf)
    actions = [r.json["event_action"] for r in receiver.on("/pd")]
    assert actions == ["trigger", "trigger", "resolve"]


async def test_a_receiver_removed_from_the_settings_is_given_up(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    store: Store,
    db: Db,
    receiver: Receiver,
) -> None:
    make_backlog(db)
    await AlertEvaluator(store, configured(settings_factory, receiver)).run_once()
    only_slack = settings_factory(
        **{"alerts.receivers": [{"type": "slack", "url": f"{receiver.url}/slack"}]}
    )
    delivery = AlertDelivery(store, only_slack)
    assert await delivery.run_once() == 1
    await delivery.close()
    rows = db.execute(
        b"SELECT receiver, last_error FROM alert_notifications"
        b" WHERE gave_up_at IS NOT NULL ORDER BY receiver"
    ).fetchall()
    assert rows == [
        ("ops", "receiver no longer configured"),
        ("pagerduty", "receiver no longer configured"),
    ]


async def test_background_delivery_never_waits_for_a_slow_receiver(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    store: Store,
    db: Db,
    receiver: Receiver,
) -> None:
    conf = configured(settings_factory, receiver)
    make_backlog(db)
    await AlertEvaluator(store, conf).run_once()
    receiver.hold = threading.Event()
    background = BackgroundDelivery(AlertDelivery(store, conf))
    try:
        await background.run_once()  # returns at once: the POSTs wait in their own task
        await background.run_once()  # the previous pass still runs: nothing claimed twice
        assert not receiver.received  # every POST is still waiting for its answer
        receiver.hold.set()

        def delivered() -> bool:
            row = db.execute(
                b"SELECT count(*) FROM alert_notifications WHERE delivered_at IS NOT NULL"
            ).fetchone()
            return row is not None and row[0] == 3

        await wait_until(delivered, message="every notification delivered")
    finally:
        await background.close()
    assert len(receiver.received) == 3


async def test_the_leading_queuer_evaluates_and_delivers(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    db: Db,
    receiver: Receiver,
) -> None:
    """End to end: the queuer that wins the election runs both passes, and a receiver
    hears of the alert without anyone calling run_once()."""
    conf = configured(settings_factory, receiver, **{"alerts.evaluate_interval": 0.2})
    make_backlog(db)
    queuer = await Queuer.open(conf)
    stop = asyncio.Event()
    task = asyncio.ensure_future(queuer.run(stop))
    try:
        await wait_until(lambda: len(receiver.on("/hook")) == 1, message="the fired webhook")
        db.execute(b"DELETE FROM metrics_minutes")
        # Each receiver is sent to on its own: wait for all three, not the first to answer.
        await wait_until(
            lambda: all(len(receiver.on(path)) == 2 for path in ("/hook", "/pd", "/slack")),
            message="the resolve at every receiver",
        )
    finally:
        stop.set()
        await task
    assert [r.json["event"] for r in receiver.on("/hook")] == ["fired", "resolved"]
    assert len(receiver.on("/pd")) == len(receiver.on("/slack")) == 2
