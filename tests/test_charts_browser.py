"""The charts page in a real chromium, against a real `conveyor web`, on fabricated
metrics history (docs/metrics-history.md).

Debian's chromium is driven by Playwright (never `playwright install`). Set
CONVEYOR_TEST_SCREENSHOTS to a folder (docs/images) to keep the screenshot the
documentation shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.config import Settings
from tests.browser import WAIT_MS, launched_chromium, playwright_or_skip, wait_for_web
from tests.factories import add_history
from tests.processes import Processes, free_port

sync_api = playwright_or_skip()

pytestmark = pytest.mark.browser
TOKEN = "viewer-token-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium(sync_api)


@pytest.fixture
def web(procs: Processes, settings: Settings) -> str:
    port = free_port()
    procs.conveyor("web", "--port", str(port), name="web", WEB__TOKENS=f"viewer-bot:viewer:{TOKEN}")
    url = f"http://127.0.0.1:{port}"
    wait_for_web(url, procs)
    return url


def test_charts_draw_the_history_and_switch_windows(
    browser: Any, web: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # A busy hour on "emails" with a burst of failures, a quieter "reports", and an
    # older day that only the 24 h and 72 h windows reach.
    for minute in range(1, 60):
        add_history(
            db,
            minute,
            "emails",
            completed=40 + minute % 7,
            enqueued=42,
            failed=12 if 20 <= minute <= 25 else 1,
            run_p95=0.8,
            wait_p95=0.2,
        )
        if minute % 3 == 0:
            add_history(db, minute, "reports", completed=5, run_p95=4.0, wait_p95=1.5)
    for minute in range(600, 1200, 10):
        add_history(db, minute, "emails", completed=300)  # fmt: skip
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(f"{web}/login")
    page.fill("input[name=token]", TOKEN)
    page.click("form.login-token button[type=submit]")
    page.wait_for_url(f"{web}/")

    page.get_by_role("link", name="Charts").click()
    page.wait_for_url(f"{web}/charts")
    expect = sync_api.expect
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(6)  # all queues, emails, reports: throughput and latency
    completed = page.locator("section[aria-label='all queues'] polyline.series-completed")
    expect(completed).to_have_count(1)
    assert len(completed.get_attribute("points").split()) >= 59
    box = page.locator("section[aria-label='all queues'] svg.chart").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100, "drawn, not collapsed"
    expect(page.locator("section[aria-label='all queues'] .chart-totals")).to_contain_text("failed")
    shots = Path(os.environ.get("CONVEYOR_TEST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shots / "charts.png", full_page=True)

    page.get_by_role("link", name="24h").click()
    page.wait_for_url(f"{web}/charts?window=24h")
    expect(page.get_by_role("link", name="24h")).to_have_attribute("aria-current", "page")
    day = page.locator("section[aria-label='all queues'] svg.chart").first
    expect(day).to_have_attribute("data-points", "240")  # 1,440 minutes, 6 to a point
    hour = sum(40 + minute % 7 for minute in range(1, 60)) + 5 * len(range(3, 60, 3))
    totals = page.locator("section[aria-label='all queues'] .chart-totals strong")
    expect(totals.nth(1)).to_have_text(f"{hour + 60 * 300:,}")  # completed
    page.get_by_role("link", name="72h").click()
    page.wait_for_url(f"{web}/charts?window=72h")
    expect(page.get_by_role("link", name="72h")).to_have_attribute("aria-current", "page")
    page.get_by_role("link", name="reports").click()
    expect(page.locator("svg.chart")).to_have_count(2)
    expect(page.locator("h1")).to_have_text("Charts: reports")
    assert errors == []
