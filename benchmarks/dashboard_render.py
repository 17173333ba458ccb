"""How fast the dashboard renders with 1,000,000 jobs in PostgreSQL.

Fills a scratch schema (INSERT ... SELECT over generate_series: five queues, every
status, a busy last hour in job_logs), then requests pages through the ASGI app in this
process, logged in like a browser, and prints p50 / p95 per page:

  - the queue list (`/`), the page an operator keeps open (target: p95 < 300 ms);
  - its 5-second refresh fragment (`/fragments/queues`);
  - one queue's first page of jobs (`/queues/<name>`) and its refresh (`.../rows`);
  - the dead-letter view's first page (`/dead`).

Run: .venv/bin/python benchmarks/dashboard_render.py [--jobs 1000000] [--runs 30] [--keep]
It drops and recreates the schema `conveyor_dash_bench` (and Redis keys under
`dash_bench:`) unless --reuse finds it already filled; like `conveyor bench`, it refuses
to drop that schema if an earlier scratch run did not create it, or if the configuration
names it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
import time
from pathlib import Path

import httpx
import psycopg

from conveyor.config import Settings, load_settings
from conveyor.launch import reset_namespace, wipe_namespace
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app

# Rows are fabricated by the tests' factory module, the one place such SQL lives.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.at_scale import percentile, print_timings, scale_parser
from tests.factories import make_settings
from tests.factories_bulk import fill_at_scale

SCHEMA = "conveyor_dash_bench"
PREFIX = "dash_bench:"
TOKEN = secrets.token_urlsafe(24)  # lives as long as this run
QUEUES = [
    "email-sending:high",
    "email-sending",
    "email-sending:low",
    "analytics:daily-aggregate",
    "warmup:process",
]
TARGET_MS = 300.0
QUEUE_LIST = "queue list /"
PAGES = [  # (label, path, is an htmx fragment)
    (QUEUE_LIST, "/", False),
    ("queue list refresh /fragments/queues", "/fragments/queues", True),
    ("queue page /queues/email-sending", "/queues/email-sending", False),
    ("queue rows refresh /queues/email-sending/rows", "/queues/email-sending/rows", True),
    ("dead letters /dead", "/dead", False),
]


def settings_for(database_url: str, redis_url: str) -> Settings:
    return make_settings(
        database_url,
        SCHEMA,
        PREFIX,
        redis_url,
        fast=False,
        **{"web.tokens": [{"name": "bench", "role": "admin", "token": TOKEN}]},
    )


def fill(settings: Settings, jobs: int) -> None:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{SCHEMA}"'.encode())
        fill_at_scale(conn, jobs, QUEUES, running_queue="email-sending")


def already_filled(settings: Settings, jobs: int) -> bool:
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        found = conn.execute(
            b"SELECT to_regclass(%s) IS NOT NULL", (f'"{SCHEMA}".jobs',)
        ).fetchone()
        if not (found and found[0]):
            return False
        conn.execute(f'SET search_path TO "{SCHEMA}"'.encode())
        row = conn.execute(b"SELECT count(*) FROM jobs").fetchone()
        return row is not None and row[0] >= jobs


async def measure(settings: Settings, runs: int) -> dict[str, list[float]]:
    app = create_app(settings)
    results: dict[str, list[float]] = {}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        login = await client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert csrf, "no CSRF token on the login page"
        reply = await client.post("/login", data={"token": TOKEN, "csrf_token": csrf.group(1)})
        assert reply.status_code == 303, reply.text
        # The admin call every queue-list render makes, alone: what the page adds on top.
        admin = app.state.admin
        for _ in range(3):
            await admin.stats()
        samples = []
        for _ in range(runs):
            began = time.perf_counter()
            await admin.stats()
            samples.append((time.perf_counter() - began) * 1000)
        results["(admin.stats() alone)"] = samples
        for label, path, fragment in PAGES:
            # A fragment is asked for the way htmx asks for it.
            headers = {"HX-Request": "true"} if fragment else {}
            for _ in range(3):  # warm the pool, the plans and the caches
                assert (await client.get(path, headers=headers)).status_code == 200, path
            samples = []
            for _ in range(runs):
                began = time.perf_counter()
                answer = await client.get(path, headers=headers)
                if answer.status_code != 200:
                    # Reported, not fatal: a shared server may drop a pooled connection.
                    print(f"  {path}: {answer.status_code} {answer.text[:120]}")
                    continue
                samples.append((time.perf_counter() - began) * 1000)
            results[label] = samples
    return results


def main() -> None:
    parser = scale_parser(__doc__.split("\n\n")[0], runs=30)
    args = parser.parse_args()
    settings = settings_for(args.database_url, args.redis_url)
    configured = load_settings(None)  # the operator's own namespace, never to be wiped
    if not (args.reuse and already_filled(settings, args.jobs)):
        reset_namespace(settings.database.url, SCHEMA, settings.redis.url, PREFIX, configured)
        migrate(settings.database.url, SCHEMA)
        print(f"filling {SCHEMA} with {args.jobs:,} jobs")
        fill(settings, args.jobs)
    try:
        results = asyncio.run(measure(settings, args.runs))
    finally:
        if not args.keep:
            wipe_namespace(settings.database.url, SCHEMA, settings.redis.url, PREFIX, configured)
    print_timings(results, f"{args.jobs:,} jobs, {args.runs} requests per page (ms)", "page", 48)
    worst = percentile(results[QUEUE_LIST], 0.95)
    verdict = "meets" if worst < TARGET_MS else "misses"
    print(f"\nqueue list p95 {worst:.1f} ms {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
