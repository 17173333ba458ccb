"""The dashboard through its ASGI app, against real PostgreSQL and Redis.

Jobs in states that take a real system a while to reach (dead with a traceback, a silent
worker) are written with SQL into the test schema; the dashboard itself only ever goes
through the admin layer. The browser tests drive the same pages in chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from conveyor.admin import QueueStats, Stats, WorkersSummary
from conveyor.admin.history import HistoryPoint
from conveyor.config import Settings
from conveyor.ids import uuid7
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from conveyor.web.auth import hash_password
from conveyor.web.charts import THROUGHPUT, line_chart
from conveyor.web.pages.format import age, count, sparkline
from conveyor.web.pages.history import ThroughputHistory
from tests import factories

TOKENS = {
    "viewer": "viewer-token-0123456789",
    "operator": "operator-token-0123456789",
    "admin": "admin-token-0123456789",
}
PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
POST_FORM = re.compile(r'<form method="post" action="([^"]+)"')
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "reports.py", line 12, in aggregate\n'
    "    return total / count\n"
    "ZeroDivisionError: division by zero in MRR calculation\n"
)


@pytest.fixture
def web_settings(settings_factory: Callable[..., Settings]) -> Settings:
    settings = settings_factory(
        **{
            "web.tokens": [
                {"name": f"{role}-bot", "role": role, "token": token}
                for role, token in TOKENS.items()
            ],
            "web.users": [
                {"username": "alice", "password_hash": hash_password(PASSWORD), "role": "operator"}
            ],
            "thresholds.warning_waiting": 5,
            "thresholds.critical_waiting": 20,
        }
    )
    migrate(settings.database.url, settings.database.schema_name)
    return settings


@pytest.fixture
def db(web_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(web_settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{web_settings.database.schema_name}"'.encode())
        yield conn


@pytest.fixture
async def client(web_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(web_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as test_client,
    ):
        yield test_client


def csrf_of(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def login(client: httpx.AsyncClient, role: str = "operator") -> str:
    """Log in with the role's token; returns the session's CSRF token."""
    page = await client.get("/login")
    reply = await client.post(
        "/login", data={"token": TOKENS[role], "csrf_token": csrf_of(page.text), "next": "/"}
    )
    assert reply.status_code == 303, reply.text
    return csrf_of((await client.get("/")).text)


def add_job(db: psycopg.Connection[Any], queue: str = "reports", **columns: Any) -> UUID:
    return factories.add_job(db, queue, task="aggregate", **columns)


def job_status(db: psycopg.Connection[Any], job_id: UUID) -> str | None:
    row = db.execute(b"SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def is_paused(db: psycopg.Connection[Any], queue: str) -> bool:
    row = db.execute(b"SELECT is_active FROM job_queues WHERE name = %s", (queue,)).fetchone()
    return row is not None and not row[0]


def queue_row(html: str, queue: str) -> str:
    match = re.search(rf'<tr class="queue ([^"]*)" data-queue="{re.escape(queue)}">', html)
    assert match, f"no row for queue {queue}"
    return match.group(1)


# -- logging in -----------------------------------------------------------------------------


async def test_pages_send_strangers_to_the_login_page(client: httpx.AsyncClient) -> None:
    reply = await client.get("/queues/reports?status=dead")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=%2Fqueues%2Freports%3Fstatus%3Ddead"
    # A background refresh moves the whole page instead of pasting a form into a table.
    fragment = await client.get(
        "/fragments/queues",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/workers"},
    )
    assert fragment.headers["hx-redirect"] == "/login?next=%2Fworkers"
    page = await client.get("/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_token_login_and_logout(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    page = await client.get("/login?next=/workers")
    reply = await client.post(
        "/login",
        data={"token": TOKENS["viewer"], "csrf_token": csrf_of(page.text), "next": "/workers"},
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/workers"
    cookie = reply.headers["set-cookie"].lower()
    assert "conveyor_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    home = await client.get("/")
    assert home.status_code == 200 and "viewer-bot" in home.text
    assert (await client.post("/logout", data={})).status_code == 403  # no CSRF token
    out = await client.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await client.get("/")).status_code == 303


async def test_password_login(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    token = csrf_of(page.text)
    wrong = await client.post(
        "/login", data={"username": "alice", "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    right = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert right.status_code == 303
    assert "alice" in (await client.get("/")).text


async def test_login_refuses_bad_tokens_foreign_next_and_missing_csrf(
    client: httpx.AsyncClient,
) -> None:
    token = csrf_of((await client.get("/login")).text)
    bad = await client.post("/login", data={"token": "x" * 30, "csrf_token": token})
    assert bad.status_code == 401 and "not valid" in bad.text
    no_csrf = await client.post("/login", data={"token": TOKENS["admin"]})
    assert no_csrf.status_code == 403
    assert (await client.get("/")).status_code == 303  # still logged out
    away = await client.post(
        "/login",
        data={"token": TOKENS["admin"], "csrf_token": token, "next": "//evil.example/x"},
    )
    assert away.status_code == 303 and away.headers["location"] == "/"


# -- the queue list ---------------------------------------------------------------------------


async def test_queue_list_shows_colours_lanes_and_actions(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    factories.add_jobs(db, "calm", 2)
    factories.add_jobs(db, "busy", 8)  # warning from 5
    factories.add_jobs(db, "jammed", 25)  # critical over 20
    add_job(db, "broken", status="dead", attempt=3, error="boom")
    await login(client, "operator")
    html = (await client.get("/")).text
    assert "health-green" in queue_row(html, "calm")
    assert "health-yellow" in queue_row(html, "busy")
    assert "health-red" in queue_row(html, "jammed")
    assert "25 jobs waiting, over the critical level of 20" in html
    assert 'action="/queues/jammed/pause"' in html
    # Clearing deletes dead jobs, like a purge: only admins get the button.
    assert 'action="/queues/broken/clear-failed"' not in html
    assert '<svg class="spark"' in html
    fragment = await client.get("/fragments/queues", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="overview"')
    assert "<html" not in fragment.text


async def test_viewer_sees_no_buttons_and_cannot_post(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    dead = add_job(db, "reports", status="dead", attempt=3, error="boom", traceback=TRACEBACK)
    token = await login(client, "viewer")
    for path in ("/", "/queues/reports", f"/jobs/{dead}", "/dead"):
        html = (await client.get(path)).text
        assert set(POST_FORM.findall(html)) == {"/logout"}, path
        assert 'name="ids"' not in html, path
        assert "hx-post" not in html, path
    for path, data in (
        ("/queues/reports/pause", {}),
        ("/queues/reports/clear-failed", {}),
        (f"/jobs/{dead}/retry", {}),
        (f"/jobs/{dead}/delete", {}),
        ("/jobs/retry", {"ids": str(dead)}),
        ("/dead/replay", {"scope": "all"}),
        ("/dead/purge", {}),
    ):
        reply = await client.post(path, data={**data, "csrf_token": token})
        assert reply.status_code == 403, path
        assert "needs the" in reply.text
    assert not is_paused(db, "reports")
    assert job_status(db, dead) == "dead"


async def test_posts_need_the_csrf_token_and_our_own_origin(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    factories.add_jobs(db, "reports", 1)
    token = await login(client, "admin")
    assert (await client.post("/queues/reports/pause", data={})).status_code == 403
    wrong = await client.post("/queues/reports/pause", data={"csrf_token": "forged"})
    assert wrong.status_code == 403
    cross = await client.post(
        "/queues/reports/pause",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and "cross-site" in cross.text
    htmx_cross = await client.post(
        "/queues/reports/pause",
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example", "HX-Request": "true"},
    )
    assert htmx_cross.status_code == 403
    assert not is_paused(db, "reports")
    # The same request from our own page goes through.
    ours = await client.post(
        "/queues/reports/pause",
        headers={"X-CSRF-Token": token, "Origin": "http://testserver", "HX-Request": "true"},
    )
    assert ours.status_code == 200, ours.text
    assert is_paused(db, "reports")


async def test_pause_resume_and_clear_failed(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    dead = [add_job(db, "reports", status="dead", attempt=3, error="boom") for _ in range(3)]
    token = await login(client, "operator")
    htmx = {"X-CSRF-Token": token, "HX-Request": "true"}
    paused = await client.post("/queues/reports/pause", headers=htmx)
    assert paused.status_code == 200 and "paused" in paused.text
    assert "conveyor-acted" in paused.headers["hx-trigger"]
    assert is_paused(db, "reports")
    assert 'action="/queues/reports/resume"' in (await client.get("/")).text
    # A plain form post (no htmx) redirects back with the message.
    resumed = await client.post(
        "/queues/reports/resume", data={"csrf_token": token, "next": "/queues/reports"}
    )
    assert resumed.status_code == 303 and resumed.headers["location"] == "/queues/reports"
    assert "resumed" in (await client.get("/queues/reports")).text
    assert not is_paused(db, "reports")
    refused = await client.post("/queues/reports/clear-failed", headers=htmx)
    assert refused.status_code == 403, "clearing dead jobs is a purge: admins only"
    assert all(job_status(db, job) == "dead" for job in dead)
    client.cookies.clear()  # a fresh session for the admin
    token = await login(client, "admin")
    assert 'action="/queues/reports/clear-failed"' in (await client.get("/")).text
    htmx = {"X-CSRF-Token": token, "HX-Request": "true"}
    cleared = await client.post("/queues/reports/clear-failed", headers=htmx)
    assert "Deleted 3 dead job(s)" in cleared.text
    assert all(job_status(db, job) is None for job in dead)
    audit = db.execute(b"SELECT actor, action FROM audit_log ORDER BY id").fetchall()
    assert [row[1] for row in audit] == ["pause", "resume", "clear_failed"]
    assert [row[0] for row in audit][:2] == ["token:operator-bot"] * 2


# -- jobs -------------------------------------------------------------------------------------


async def test_job_detail_page_and_modal_fragment(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    payload = {"account": 7, "note": "<script>alert(1)</script>"}
    dead = add_job(
        db,
        status="dead",
        attempt=3,
        payload=payload,
        error="ZeroDivisionError: division by zero in MRR calculation",
        traceback=TRACEBACK,
    )
    waiting = add_job(db, "reports")
    await login(client, "operator")
    page = await client.get(f"/jobs/{dead}")
    assert page.status_code == 200 and "<html" in page.text
    assert "return total / count" in page.text  # the stack trace
    assert "3 of 3" in page.text and "1.5s" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # payload escaped
    assert "<script>alert(1)" not in page.text
    assert f'action="/jobs/{dead}/retry"' in page.text
    modal = await client.get(f"/jobs/{dead}", headers={"HX-Request": "true"})
    assert "<html" not in modal.text and 'class="job card"' in modal.text
    explained = (await client.get(f"/jobs/{waiting}")).text
    assert 'class="why"' in explained
    assert f'action="/jobs/{waiting}/retry"' not in explained  # waiting already
    assert (await client.get("/jobs/not-a-job")).status_code == 400
    missing = await client.get(f"/jobs/{uuid7()}")
    assert missing.status_code == 404 and "no job with id" in missing.text


async def test_retry_and_delete_one_job(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    dead = add_job(db, status="dead", attempt=3, error="boom", traceback=TRACEBACK)
    token = await login(client, "operator")
    htmx = {"X-CSRF-Token": token, "HX-Request": "true"}
    retried = await client.post(f"/jobs/{dead}/retry", headers=htmx)
    assert retried.status_code == 200 and "queued to run again" in retried.text
    row = db.execute(b"SELECT status, attempt FROM jobs WHERE id = %s", (dead,)).fetchone()
    assert row == ("queued", 0)
    again = await client.post(f"/jobs/{dead}/retry", headers=htmx)
    assert again.status_code == 409 and "already queued" in again.text
    assert again.headers["content-type"].startswith("text/plain")  # shown by the page script
    deleted = await client.post(f"/jobs/{dead}/delete", data={"csrf_token": token, "next": "/"})
    assert deleted.status_code == 303 and job_status(db, dead) is None


async def test_bulk_retry_and_delete(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    dead = [add_job(db, status="dead", attempt=3, error="boom") for _ in range(3)]
    waiting = add_job(db)
    token = await login(client, "operator")
    htmx = {"X-CSRF-Token": token, "HX-Request": "true"}
    retried = await client.post(
        "/jobs/retry", data={"ids": [str(dead[0]), str(dead[1]), str(waiting)]}, headers=htmx
    )
    assert "Queued 2 job(s) to run again; skipped 1" in retried.text
    assert json.loads(retried.headers["hx-trigger"]) == {"conveyor-acted": {"clear": True}}
    assert [job_status(db, job) for job in dead] == ["queued", "queued", "dead"]
    deleted = await client.post(
        "/jobs/delete", data={"ids": [str(dead[2]), str(waiting)]}, headers=htmx
    )
    # Finding 4: deleting a dead job is a dead-letter purge, which an operator may not do.
    assert "Deleted 1 job(s); skipped 1" in deleted.text and "admin role" in deleted.text
    assert job_status(db, dead[2]) == "dead" and job_status(db, waiting) is None
    nothing = await client.post("/jobs/delete", data={}, headers=htmx)
    assert "Tick the jobs" in nothing.text


# -- the queue page -----------------------------------------------------------------------------


async def test_queue_page_filters_and_keyset_pages(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    factories.add_jobs(db, "reports", 60)
    dead = add_job(db, "reports", status="dead", attempt=3, payload={"campaign": "black-friday"})
    await login(client, "operator")
    first = (await client.get("/queues/reports")).text
    assert first.count('name="ids"') == 50
    assert "Retry selected" in first and "Delete selected" in first
    cursor = re.search(r'href="\?after=([^"]+)"', first)
    assert cursor, "no link to the next page"
    second = (await client.get(f"/queues/reports/rows?after={cursor.group(1)}")).text
    assert second.count('name="ids"') == 11 and "Older" not in second
    found = (await client.get("/queues/reports?text=black-fri")).text
    assert found.count('name="ids"') == 1 and str(dead) in found
    by_status = (await client.get("/queues/reports?status=dead")).text
    assert by_status.count('name="ids"') == 1
    # Ticked boxes sent with a refresh come back ticked.
    kept = (await client.get(f"/queues/reports/rows?status=dead&ids={dead}")).text
    assert f'value="{dead}" checked' in kept
    bad = await client.get("/queues/reports?min_age=soon")
    assert bad.status_code == 400 and "invalid duration" in bad.text
    unknown = await client.get("/queues/nope")
    assert unknown.status_code == 404 and "unknown queue" in unknown.text


# -- dead letters and workers -------------------------------------------------------------------


async def test_dead_letter_view_replay_and_purge(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    first = add_job(db, "reports", status="dead", attempt=3, error="boom")
    second = add_job(db, "reports", status="dead", attempt=3, error="boom")
    other = add_job(db, "mail", status="dead", attempt=3, error="smtp down")
    token = await login(client, "operator")
    page = (await client.get("/dead?queue=mail")).text
    assert str(other) in page and str(first) not in page
    assert "Replay all (mail)" in page and "Purge" not in page  # operators cannot purge
    htmx = {"X-CSRF-Token": token, "HX-Request": "true"}
    replayed = await client.post("/dead/replay", data={"ids": str(first)}, headers=htmx)
    assert "Replayed 1 dead job(s)" in replayed.text
    assert job_status(db, first) == "queued"
    assert (await client.post("/dead/purge", headers=htmx)).status_code == 403
    everything = await client.post(
        "/dead/replay", data={"scope": "all", "queue": "mail"}, headers=htmx
    )
    assert "Replayed 1 dead job(s)" in everything.text
    assert job_status(db, other) == "queued" and job_status(db, second) == "dead"

    await client.post("/logout", data={"csrf_token": token})
    token = await login(client, "admin")
    assert "Purge (every queue)" in (await client.get("/dead")).text
    purged = await client.post(
        "/dead/purge", data={"queue": ""}, headers={"X-CSRF-Token": token, "HX-Request": "true"}
    )
    assert "Deleted 1 dead job(s)" in purged.text and job_status(db, second) is None


async def test_workers_view_flags_silent_workers(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    factories.add_worker(db, "w-live", ["reports"], pid=101, concurrency=4, in_flight=2)
    factories.add_worker(
        db,
        "w-gone",
        ["reports", "mail"],
        host="host-b",
        pid=202,
        concurrency=8,
        silent_for=60,
        in_flight=1,
    )
    await login(client, "viewer")
    html = (await client.get("/workers")).text
    assert "host-a" in html and "host-b" in html and "2 / 4" in html
    assert re.search(r'<tr class="worker state-ok">\s*<th[^>]*><code>w-live', html)
    assert re.search(r'<tr class="worker state-silent">\s*<th[^>]*><code>w-gone', html)
    fragment = (await client.get("/fragments/workers", headers={"HX-Request": "true"})).text
    assert fragment.lstrip().startswith('<div id="worker-list"')


async def test_charts_page_draws_the_history(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    factories.add_history(db, 1, "emails", completed=12, failed=2, enqueued=15, run_p95=0.5)
    factories.add_history(db, 3, "emails", completed=4)
    factories.add_history(db, 2, "reports", completed=1)
    await login(client, "viewer")
    html = (await client.get("/charts")).text
    assert 'aria-current="page">Charts<' in html
    assert html.count('<svg class="chart"') == 6  # all queues, then each: throughput, latency
    assert re.search(r'<polyline class="series series-completed" fill="none" points="[^"]+"', html)
    assert "completed 17" in html  # the legend sums the window
    day = (await client.get("/charts?window=24h&queue=emails")).text
    assert day.count('<svg class="chart"') == 2 and 'aria-current="page">24h<' in day
    assert (await client.get("/charts?window=forever")).status_code == 400
    assert (await client.get("/charts?queue=nowhere")).status_code == 404


def test_chart_text_is_escaped() -> None:
    point = HistoryPoint(bucket=datetime(2026, 1, 1, tzinfo=UTC), completed=3)
    svg = str(line_chart([point, point], THROUGHPUT, title="<b>odd</b> & co"))
    assert "&lt;b&gt;odd&lt;/b&gt; &amp; co" in svg and "<b>" not in svg
    assert str(line_chart([], THROUGHPUT, title="quiet")).count("no history yet") == 1


async def test_static_files_and_headers(client: httpx.AsyncClient) -> None:
    for name in ("htmx.min.js", "dashboard.js", "dashboard.css", "htmx.LICENSE"):
        assert (await client.get(f"/static/{name}")).status_code == 200, name
    await login(client, "viewer")
    home = await client.get("/")
    assert home.headers["x-frame-options"] == "DENY"
    assert home.headers["cache-control"] == "no-store"
    assert "http://" not in re.sub(r'xmlns="[^"]+"', "", home.text)  # nothing from elsewhere


# -- the pieces the pages are drawn with ---------------------------------------------------------


def test_ages_counts_and_sparklines() -> None:
    assert [age(s) for s in (None, 3.25, 42, 60, 200, 3600, 3660, 90000)] == [
        "\u2013",
        "3.2s",
        "42s",
        "1m",
        "3m 20s",
        "1h",
        "1h 1m",
        "1d 1h",
    ]
    assert count(1234567) == "1,234,567" and count(2.5) == "2.5"
    assert sparkline([]).points == ""
    flat = sparkline([3.0]).points.split()
    assert len(flat) == 2 and flat[0].split(",")[1] == flat[1].split(",")[1]
    rising = [tuple(map(float, p.split(","))) for p in sparkline([0, 5, 10]).points.split()]
    assert rising[0][1] > rising[1][1] > rising[2][1]  # SVG y grows downwards


def test_throughput_history_keeps_one_sample_per_bucket() -> None:
    history = ThroughputHistory(bucket_seconds=30, buckets=4)
    start = datetime(2025, 1, 1, tzinfo=UTC)

    def stats_at(seconds: float, rate: float) -> Stats:
        queue = QueueStats(
            name="q", paused=False, paused_at=None, waiting=0, lanes={}, dispatched=0,
            scheduled=0, running=0, completed_last_hour=0, failed_last_hour=0, dead=0,
            oldest_waiting_age_seconds=None, throughput_per_minute=rate, target_seconds=60,
            live_workers=1, status="green",
        )  # fmt: skip
        workers = WorkersSummary(total=1, alive=1, capacity=1, busy=0)
        return Stats(
            timestamp=start + timedelta(seconds=seconds),
            queues=[queue],
            workers=workers,
            p95_duration_seconds=None,
        )

    for seconds, rate in ((0, 1.0), (10, 2.0), (35, 3.0), (125, 5.0), (40, 9.0)):
        history.record(stats_at(seconds, rate))
    # 0-29 s keeps its last sample (2.0); 30-59 s has 3.0 (a late, older sample is
    # ignored); nobody looked at 60-119 s, which repeats 3.0; 120-149 s has 5.0.
    assert history.values("q") == [2.0, 3.0, 3.0, 3.0, 5.0][-4:]
    assert history.values("other") == []


async def test_workers_view_shows_their_health(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    factories.add_worker(db, "w-live", ["reports"])
    factories.set_worker_health(db, "w-live", postgres_only=True, breakers_open=("reports",))
    factories.add_worker(db, "w-quiet", ["reports"])
    await login(client, "viewer")
    html = (await client.get("/workers")).text
    for shown in ("1h 2m", "123 MiB", "12.3 ms", "postgres-only", "breaker open: reports"):
        assert shown in html, shown
    row = re.search(r"<code>w-live</code>.*?</tr>", html, re.S)
    assert row is not None
    assert re.search(r'data-label="Processed">40<', row.group(0))
    assert re.search(r'data-label="Failed">4<', row.group(0))
    quiet = re.search(r"<code>w-quiet</code>.*?</tr>", html, re.S)
    assert quiet is not None and 'data-label="Memory">\u2013<' in quiet.group(0)


async def test_expired_jobs_have_a_filter_and_a_count(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    await login(client, "viewer")
    expired = add_job(db, status="expired")
    waiting = add_job(db)
    page = (await client.get("/queues/reports?status=expired")).text
    assert '<option value="expired" selected>expired</option>' in page
    assert str(expired) in page and str(waiting) not in page
    summary = (await client.get("/queues/reports/summary")).text
    assert "<b>1</b> expired" in summary
