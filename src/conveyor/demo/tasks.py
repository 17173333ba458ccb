"""The demo's sample app: three tasks on the specification's queues.

It doubles as an example of declaring tasks. The app takes its settings from the
environment (DATABASE_URL, REDIS_URL, DATABASE__SCHEMA, REDIS__KEY_PREFIX, ...), which
`conveyor demo` sets for itself and for the queuer and workers it starts, so every process
agrees on where the jobs live. Run a worker for it by hand with:

    conveyor worker --app conveyor.demo.tasks:app \
        --queues email-sending,analytics:daily-aggregate,warmup:process
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from conveyor import Conveyor, JobContext, RetryPolicy

app = Conveyor()

# A short backoff, so jobs that keep failing use up their attempts within a few seconds
# instead of the default minutes: the demo should end while the user is still watching.
FAST_RETRY = RetryPolicy(base=0.2, cap=1.0)

# The priorities land in the high (<= 50), normal (<= 150) and low lanes.
EMAIL_PRIORITIES = {"high": 10, "normal": 100, "low": 200}
EMAIL_TEMPLATES = {"high": "password-reset", "normal": "welcome", "low": "weekly-digest"}


def _pause() -> float:
    # A few milliseconds of "work", so the progress display has something to show.
    return random.uniform(0.005, 0.05)  # noqa: S311 - timing only, not security


@app.task(queue="email-sending", max_attempts=3, retry=FAST_RETRY)
async def send_email(payload: dict[str, Any]) -> None:
    await asyncio.sleep(_pause())
    if "@" not in payload["to"]:
        raise ValueError(f"not an e-mail address: {payload['to']!r}")


@app.task(queue="analytics:daily-aggregate", max_attempts=3, retry=FAST_RETRY)
def daily_aggregate(payload: dict[str, Any]) -> float:
    # A sync handler on purpose: workers run these in a thread pool, off the event loop.
    time.sleep(_pause())
    try:
        return float(payload["mrr_cents"] / payload["customers"])  # revenue per customer
    except ZeroDivisionError:
        # Fails the same way on every attempt, so the job ends up dead after max_attempts.
        raise ArithmeticError(
            f"Division by zero in MRR calculation for account {payload['account']} "
            f"on {payload['day']}: no paying customers"
        ) from None


@app.task(queue="warmup:process", max_attempts=3, retry=FAST_RETRY)
async def warmup(payload: dict[str, Any], ctx: JobContext) -> None:
    await asyncio.sleep(_pause())
    if payload.get("flaky") and ctx.attempt == 1:
        raise ConnectionError(f"cache node {payload['node']} not ready yet, try again")


@dataclass(frozen=True)
class Expected:
    """What the sample jobs should come to once every one of them has finished."""

    total: int
    dead: int
    retried: int


def enqueue_samples(total: int) -> Expected:
    """Enqueue `total` (at least 10) sample jobs, mostly in bulk, and say how they should end."""
    analytics = max(2, total // 5)
    warmups = max(2, total // 6)
    failing = max(1, min(5, analytics // 10))
    emails = total - analytics - warmups
    per_lane = {"high": emails // 4, "low": emails // 5}
    per_lane["normal"] = emails - per_lane["high"] - per_lane["low"] - 1  # one sent alone
    day = time.strftime("%Y-%m-%d")

    for lane, count in per_lane.items():
        payloads = [
            {"to": f"user{lane[0]}{n}@example.com", "template": EMAIL_TEMPLATES[lane]}
            for n in range(count)
        ]
        app.enqueue_many(send_email, payloads, priority=EMAIL_PRIORITIES[lane])
    send_email.enqueue({"to": "ceo@example.com", "template": "welcome"}, priority=100)

    healthy = [
        {
            "account": n,
            "day": day,
            "mrr_cents": random.randint(10_000, 5_000_000),  # noqa: S311 - sample data
            "customers": random.randint(1, 500),  # noqa: S311 - sample data
        }
        for n in range(analytics - failing)
    ]
    app.enqueue_many(daily_aggregate, healthy)
    for n in range(failing):
        account = 9000 + n
        daily_aggregate.enqueue({"account": account, "day": day, "mrr_cents": 0, "customers": 0})

    app.enqueue_many(warmup, [{"node": f"cache-{n}"} for n in range(warmups - 1)])
    warmup.enqueue({"node": "cache-flaky", "flaky": True})
    # The flaky warm-up and every failing aggregate run more than once.
    return Expected(total=total, dead=failing, retried=failing + 1)


# Nobody in the demo serves this queue: while the dashboard is open it backs up, so the
# "no live worker" and backlog alerts have something to fire on.
UNSERVED_QUEUE = "reports:backfill"


@app.task(queue=UNSERVED_QUEUE)
def backfill_report(payload: dict[str, Any]) -> None:
    time.sleep(_pause())


@app.task(queue="warmup:process", max_attempts=3, retry=FAST_RETRY)
async def slow_warmup(payload: dict[str, Any]) -> None:
    # Seconds, not milliseconds: the dashboard's running column and run-time chart move.
    await asyncio.sleep(random.uniform(1.0, 4.0))  # noqa: S311 - timing only


def enqueue_trickle(tick: int) -> int:
    """One second of the live demo's sample traffic: mostly healthy, about one job in
    twelve failing for good, a slow one now and then, and a queue nobody serves."""
    emails = [
        {"to": f"user{tick}-{n}@example.com" if (tick + n) % 12 else f"user{tick}-{n}"}
        for n in range(6)
    ]
    app.enqueue_many(send_email, emails, priority=EMAIL_PRIORITIES["normal"])
    customers = 0 if tick % 10 == 0 else random.randint(1, 500)  # noqa: S311 - sample data
    daily_aggregate.enqueue(
        {"account": tick, "day": time.strftime("%Y-%m-%d"), "mrr_cents": 90_000,
         "customers": customers}
    )  # fmt: skip
    enqueued = len(emails) + 1
    if tick % 3 == 0:
        slow_warmup.enqueue({"node": f"cache-{tick}"})
        enqueued += 1
    backfill_report.enqueue({"report": tick})
    return enqueued + 1
