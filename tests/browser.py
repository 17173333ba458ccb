"""What the browser tests share: Debian's chromium driven by Playwright (never a
downloaded browser), and waiting for a real `conveyor web` to answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Processes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 20_000


def playwright_or_skip() -> Any:
    """Playwright's sync API, or skip the calling module when chromium or Playwright is
    missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    sync_api.expect.set_options(timeout=WAIT_MS)
    return sync_api


def launched_chromium(sync_api: Any) -> Iterator[Any]:
    """A browser for a module-scoped fixture to yield from; skips when it cannot start."""
    playwright = sync_api.sync_playwright().start()
    try:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Exception as error:  # noqa: BLE001 - any launch failure means "cannot test here"
        playwright.stop()
        pytest.skip(f"chromium did not start: {error}")
    yield instance
    instance.close()
    playwright.stop()


def wait_for_web(url: str, procs: Processes, timeout: float = 30.0) -> None:
    """Until the login page answers; the processes' logs if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("conveyor web did not start:\n" + procs.logs())
        time.sleep(0.1)
