"""Tasks for the dashboard's browser tests: one that fails with a real traceback until
its fix is "deployed" (a file appears), and one that takes a moment.

Worker subprocesses import `tests.apps.dashboard_app:app` (settings from the
environment); the test registers the same tasks on its own Conveyor with `register`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor, JobContext


def average_revenue(revenue: float, accounts: int) -> float:
    return revenue / accounts


def register(app: Conveyor) -> None:
    @app.task(name="mrr", queue="reports", max_attempts=1)
    def mrr(payload: dict[str, Any], ctx: JobContext) -> float:
        # The bug: before the fix, closed accounts were counted out of the total.
        accounts = payload["accounts"] if Path(payload["fix_file"]).exists() else 0
        return average_revenue(float(payload["revenue"]), accounts)

    @app.task(name="send", queue="outbox", max_attempts=3)
    def send(payload: dict[str, Any], ctx: JobContext) -> None:
        time.sleep(float(payload.get("sleep", 0)))


app = Conveyor()
register(app)
