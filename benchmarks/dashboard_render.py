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

import argparse
import asyncio
import os
import re
import secrets
import statistics
import time

import httpx
import psycopg

from conveyor.config import Settings, load_settings
from conveyor.launch import reset_namespace, wipe_namespace
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app

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
    return load_settings(
        None,
        env={},
        overrides={
            "database.url": database_url,
            "database.schema": SCHEMA,
            "redis.url": redis_url,
            "redis.key_prefix": PREFIX,
            "web.tokens": [{"name": "bench", "role": "admin", "token": TOKEN}],
        },
    )


def fill(settings: Settings, jobs: int) -> None:
    """`jobs` rows: 85 % completed, 10 % waiting, 3 % dead, 1 % cancelled, 1 % scheduled,
    plus a few hundred running; a finished attempt per minute-ish for the last hour."""
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{SCHEMA}"'.encode())
        conn.execute(b"SET synchronous_commit = off")
        conn.execute(
            b"INSERT INTO job_queues (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (QUEUES,),
        )
        started = time.perf_counter()
        chunk = 200_000
        for low in range(1, jobs + 1, chunk):
            high = min(jobs, low + chunk - 1)
            conn.execute(
                b"""
                INSERT INTO jobs (id, queue_name, task, status, priority, payload, attempt,
                                  max_attempts, run_at, created, updated, completed, failed,
                                  last_error)
                SELECT gen_random_uuid(),
                       (%(queues)s::text[])[1 + n %% 5],
                       'task_' || (n %% 7),
                       CASE WHEN n %% 100 < 85 THEN 'completed'
                            WHEN n %% 100 < 95 THEN 'queued'
                            WHEN n %% 100 < 98 THEN 'dead'
                            WHEN n %% 100 < 99 THEN 'cancelled'
                            ELSE 'queued' END,
                       CASE WHEN n %% 10 = 0 THEN 10 WHEN n %% 10 = 9 THEN 500 ELSE 100 END,
                       jsonb_build_object('campaign', 'c' || (n %% 1000), 'recipient',
                                          'user' || n || '@example.com'),
                       CASE WHEN n %% 100 BETWEEN 95 AND 97 THEN 3 ELSE 1 END,
                       3,
                       now() - (n %% 86400) * interval '1 second'
                             + CASE WHEN n %% 100 = 99 THEN interval '2 hours'
                                    ELSE interval '0' END,
                       now() - (n %% 86400) * interval '1 second',
                       now(),
                       CASE WHEN n %% 100 < 85 THEN now() - (n %% 86400) * interval '1 second' END,
                       CASE WHEN n %% 100 BETWEEN 95 AND 97 THEN now() END,
                       CASE WHEN n %% 100 BETWEEN 95 AND 97
                            THEN 'RuntimeError: upstream said 503' END
                FROM generate_series(%(low)s::int, %(high)s::int) AS n
                """,
                {"queues": QUEUES, "low": low, "high": high},
            )
            print(f"  {high:,} jobs ({time.perf_counter() - started:.0f} s)", flush=True)
        conn.execute(
            b"INSERT INTO jobs (id, queue_name, task, status, payload, attempt, started,"
            b" lease_expires_at, worker_id) SELECT gen_random_uuid(), 'email-sending', 'task_1',"
            b" 'running', '{}', 1, now(), now() + interval '30 seconds', 'bench-worker'"
            b" FROM generate_series(1, 300)"
        )
        conn.execute(
            b"""
            INSERT INTO job_logs (job_id, queue_name, task, status, attempt_number, worker_id,
                                  started, finished, duration)
            SELECT gen_random_uuid(), (%(queues)s::text[])[1 + n %% 5], 'task_1',
                   CASE WHEN n %% 50 = 0 THEN 'failed' ELSE 'completed' END, 1, 'bench-worker',
                   now() - (n %% 3600) * interval '1 second' - interval '40 ms',
                   now() - (n %% 3600) * interval '1 second', interval '40 ms'
            FROM generate_series(1, 100000) AS n
            """,
            {"queues": QUEUES},
        )
        conn.execute(b"ANALYZE")


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


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="keep a filled schema if present")
    parser.add_argument("--keep", action="store_true", help="do not drop the schema afterwards")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
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
    print(f"\n{args.jobs:,} jobs, {args.runs} requests per page (ms)")
    print(f"{'page':<48} {'p50':>8} {'p95':>8} {'max':>8}")
    for label, samples in results.items():
        print(
            f"{label:<48} {statistics.median(samples):8.1f} {percentile(samples, 0.95):8.1f}"
            f" {max(samples):8.1f}"
        )
    worst = percentile(results[QUEUE_LIST], 0.95)
    verdict = "meets" if worst < TARGET_MS else "misses"
    print(f"\nqueue list p95 {worst:.1f} ms {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
