"""A test app with periodic jobs only: `conveyor worker --app tests.apps.periodic:app`
writes its schedules to the table at start."""

from __future__ import annotations

from typing import Any

from conveyor import Conveyor

app = Conveyor()


@app.periodic("*/5 * * * *", timezone="Europe/Paris", name="reports:five-minutes")
@app.task(queue="periodic")
def report(payload: Any) -> None:
    del payload


@app.task(queue="periodic")
def cleanup(payload: Any) -> None:
    del payload


app.schedule(cleanup, cron="0 4 * * *", payload={"older_than_days": 30}, misfire="run_once")
