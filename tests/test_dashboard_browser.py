"""The dashboard in a real chromium, against a real `conveyor web`, queuer and worker.

Debian's chromium is driven by Playwright (never `playwright install`: no browser is
downloaded). Set CONVEYOR_TEST_SCREENSHOTS to a folder (docs/images) to keep the screenshots
the documentation shows; otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.config import Settings
from tests.apps.dashboard_app import register
from tests.browser import WAIT_MS, launched_chromium, playwright_or_skip, wait_for_web
from tests.processes import Processes, free_port

sync_api = playwright_or_skip()

pytestmark = pytest.mark.browser

TOKENS = {
    "viewer": "viewer-token-0123456789",
    "operator": "operator-token-0123456789",
}


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium(sync_api)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CONVEYOR_TEST_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Dashboard:
    """A running `conveyor web` plus what the tests need around it."""

    def __init__(self, url: str, settings: Settings, client: Conveyor) -> None:
        self.url = url
        self.settings = settings
        self.client = client

    def sql(self, query: bytes, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.settings.database.url, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.settings.database.schema_name}"'.encode())
            return conn.execute(query, params).fetchall()

    def statuses(self, ids: list[UUID]) -> list[str]:
        rows = dict(self.sql(b"SELECT id, status FROM jobs WHERE id = ANY(%s)", (ids,)))
        return [rows.get(job_id, "gone") for job_id in ids]

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


@pytest.fixture
def dashboard(procs: Processes, settings: Settings, app: Conveyor) -> Dashboard:
    register(app)
    port = free_port()
    procs.conveyor(
        "web",
        "--port",
        str(port),
        name="web",
        WEB__TOKENS=",".join(f"{role}-bot:{role}:{token}" for role, token in TOKENS.items()),
        WEB__REFRESH_INTERVAL="1s",
        THRESHOLDS__WARNING_WAITING="5",
        THRESHOLDS__CRITICAL_WAITING="20",
    )
    procs.queuer()
    procs.conveyor(
        "worker",
        "--app",
        "tests.apps.dashboard_app:app",
        "--queues",
        "outbox,reports",
        "--concurrency",
        "4",
        name="worker",
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_web(url, procs)
    return Dashboard(url, settings, app)


def open_page(browser: Any, dashboard: Dashboard, role: str, width: int = 1360) -> Any:
    """A fresh browser context, logged in through the login form."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.goto(f"{dashboard.url}/")
    assert "/login" in page.url
    page.fill("input[name=token]", TOKENS[role])
    page.click("form.login-token button[type=submit]")
    page.wait_for_url(f"{dashboard.url}/")
    return page


def row(page: Any, queue: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"]')


def expect() -> Any:
    return sync_api.expect


# -- the tests ------------------------------------------------------------------------------


def test_live_colours_and_pause_stops_workers(
    browser: Any, dashboard: Dashboard, shots: Path
) -> None:
    page = open_page(browser, dashboard, "operator")
    login = browser.new_page(viewport={"width": 1000, "height": 700})
    login.goto(f"{dashboard.url}/login")
    login.screenshot(path=shots / "login.png")
    login.close()

    # A queue no worker serves fills up: the list turns it yellow, then red, by itself.
    dashboard.client.enqueue_many("send", [{}] * 6, queue="backlog")
    expect()(row(page, "backlog")).to_contain_class("health-yellow")
    dashboard.client.enqueue_many("send", [{}] * 20, queue="backlog")
    expect()(row(page, "backlog")).to_contain_class("health-red")
    expect()(row(page, "backlog")).to_contain_text("26 jobs waiting, over the critical level")

    # Pause "outbox": its new jobs wait while the same worker keeps running "reports".
    done = dashboard.client.enqueue_many("send", [{}] * 3, queue="outbox")
    dashboard.wait_for(lambda: dashboard.statuses(done) == ["completed"] * 3, "warm-up jobs")
    row(page, "outbox").get_by_role("button", name="Pause").click()
    expect()(page.locator("#flash")).to_contain_text("paused")
    expect()(row(page, "outbox").locator(".badge.paused")).to_be_visible()
    held = dashboard.client.enqueue_many("send", [{}] * 5, queue="outbox")
    # "/" exists: this report runs as if already fixed.
    control = dashboard.client.enqueue_many(
        "mrr", [{"fix_file": "/", "revenue": 10, "accounts": 2}]
    )
    dashboard.wait_for(lambda: dashboard.statuses(control) == ["completed"], "a job elsewhere")
    assert dashboard.statuses(held) == ["queued"] * 5
    expect()(row(page, "outbox").locator(".waiting")).to_have_text("5")
    page.screenshot(path=shots / "queues.png", full_page=True)

    row(page, "outbox").get_by_role("button", name="Resume").click()
    dashboard.wait_for(lambda: dashboard.statuses(held) == ["completed"] * 5, "resumed jobs")
    expect()(row(page, "outbox").locator(".badge.paused")).to_have_count(0)

    # The live toggle stops the refreshes; turning it back on restarts them.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.click("#live-toggle")
    expect()(page.locator("#live-toggle")).to_have_text("Paused")
    requests.clear()
    page.wait_for_timeout(2500)
    assert not [url for url in requests if "/fragments/" in url]
    with page.expect_request(lambda request: "/fragments/queues" in request.url):
        page.click("#live-toggle")
    expect()(page.locator("#live-toggle")).to_have_text("Live")

    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        storage_state=page.context.storage_state(),
    ).new_page()
    phone.goto(f"{dashboard.url}/")
    expect()(row(phone, "backlog")).to_be_visible()
    phone.screenshot(path=shots / "queues-phone.png")
    page.goto(f"{dashboard.url}/workers")
    expect()(page.locator("tr.worker.state-ok")).to_have_count(1)
    page.screenshot(path=shots / "workers.png", full_page=True)
    assert page.errors == []


def test_traceback_retry_and_dead_letter_replay(
    browser: Any, dashboard: Dashboard, shots: Path, tmp_path: Path
) -> None:
    fix = tmp_path / "fix-deployed"
    payloads = [{"fix_file": str(fix), "revenue": 1200 + n, "accounts": 3} for n in range(4)]
    ids = dashboard.client.enqueue_many("mrr", payloads)
    dashboard.wait_for(lambda: dashboard.statuses(ids) == ["dead"] * 4, "the reports to fail")
    page = open_page(browser, dashboard, "operator")
    page.goto(f"{dashboard.url}/queues/reports")
    expect()(page.locator("tr.job-row")).to_have_count(4)
    page.screenshot(path=shots / "queue-detail.png", full_page=True)

    # Open the first failure and read why it failed.
    page.locator(f'a.job-link[href="/jobs/{ids[0]}"]').click()
    modal = page.locator("dialog#modal")
    expect()(modal).to_be_visible()
    trace = modal.locator("details.traceback pre")
    expect()(trace).to_contain_text("ZeroDivisionError")
    expect()(trace).to_contain_text("return revenue / accounts")
    expect()(modal.locator(".attempts")).to_have_text("1 of 1")
    scrub_paths(page)
    page.screenshot(path=shots / "job-detail.png")

    # While the modal is open the list behind it holds still, and the modal stays open.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.wait_for_timeout(2500)
    assert not [url for url in requests if "/queues/reports/rows" in url]
    assert [url for url in requests if f"/jobs/{ids[0]}" in url], "the modal refreshes itself"
    expect()(modal).to_be_visible()

    # Deploy the fix, retry from the modal, and watch the job complete in it.
    fix.touch()
    modal.get_by_role("button", name="Retry").click()
    expect()(modal.locator("#modal-flash")).to_contain_text("queued to run again")
    expect()(modal.locator(".job-head .badge.status")).to_have_text("completed")
    assert dashboard.statuses(ids[:1]) == ["completed"]
    page.keyboard.press("Escape")
    expect()(modal).to_be_hidden()

    # The dead-letter view: a ticked box survives the refreshes; replay it, then the rest.
    page.goto(f"{dashboard.url}/dead")
    expect()(page.locator("tr.job-row")).to_have_count(3)
    page.locator(f'input[name=ids][value="{ids[1]}"]').check()
    for _ in range(2):
        with page.expect_response(lambda response: "/dead/rows" in response.url):
            pass
    expect()(page.locator(f'input[name=ids][value="{ids[1]}"]')).to_be_checked()
    expect()(page.locator(".selected-count")).to_have_text("1 selected")
    page.screenshot(path=shots / "dead-letters.png", full_page=True)
    page.get_by_role("button", name="Replay selected").click()
    expect()(page.locator("#flash")).to_contain_text("Replayed 1 dead job(s)")
    dashboard.wait_for(lambda: dashboard.statuses(ids[1:2]) == ["completed"], "the replayed job")
    expect()(page.locator(".selected-count")).to_have_text("0 selected")
    expect()(page.locator("tr.job-row")).to_have_count(2)
    page.get_by_role("button", name="Replay all (every queue)").click()
    dashboard.wait_for(lambda: dashboard.statuses(ids) == ["completed"] * 4, "every job")
    expect()(page.locator("#job-list")).to_contain_text("No dead jobs")
    assert page.errors == []


def test_viewer_cannot_act_and_cross_site_posts_are_refused(
    browser: Any, dashboard: Dashboard
) -> None:
    dashboard.client.enqueue_many("send", [{}] * 2, queue="outbox")
    viewer = open_page(browser, dashboard, "viewer")
    expect()(row(viewer, "outbox")).to_be_visible()
    expect()(viewer.locator("main form")).to_have_count(0)
    expect()(viewer.locator("main button")).to_have_count(0)
    # Posting anyway, from the dashboard's own page with its CSRF token: refused.
    token = json.loads(viewer.locator("body").get_attribute("hx-headers"))["X-CSRF-Token"]
    status, text = viewer.evaluate(
        """async ([url, token]) => {
            const reply = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": token}});
            return [reply.status, await reply.text()];
        }""",
        [f"{dashboard.url}/queues/outbox/pause", token],
    )
    assert status == 403 and "needs the operator role" in text

    # Another site (same host, another port: the session cookie still goes along) posts
    # a form to the dashboard of a logged-in operator, even knowing the token: refused.
    operator = open_page(browser, dashboard, "operator")
    token = json.loads(operator.locator("body").get_attribute("hx-headers"))["X-CSRF-Token"]
    evil = f"http://127.0.0.1:{free_port()}/prize.html"
    form = (
        f'<form id="f" method="post" action="{dashboard.url}/queues/outbox/pause">'
        f'<input type="hidden" name="csrf_token" value="{token}"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    operator.route(evil, lambda route: route.fulfill(body=form, content_type="text/html"))
    with operator.expect_response(f"{dashboard.url}/queues/outbox/pause") as answer:
        operator.goto(evil)
    assert answer.value.status == 403
    expect()(operator.locator("main")).to_contain_text("cross-site request refused")
    paused = dashboard.sql(b"SELECT is_active FROM job_queues WHERE name = 'work'")
    assert paused in ([], [(True,)])


def scrub_paths(page: Any) -> None:
    """Shorten this machine's absolute paths in tracebacks and payloads before a screenshot
    (the pictures go into the documentation; the checks above read the real text)."""
    page.evaluate(
        """() => {
        for (const node of document.querySelectorAll("dialog#modal pre")) {
            node.textContent = node.textContent
                .replace(/"\\/[^"]*?\\/(src|tests|lib\\/python3\\.\\d+)\\//g, '".../$1/')
                .replace(/\\/tmp\\/[^"]*\\//g, "/tmp/.../");
        }
    }"""
    )
