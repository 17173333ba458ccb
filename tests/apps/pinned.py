"""An app that names its own schema: a worker run on another one must refuse it."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor(schema="pinned_elsewhere")


@app.task(name="noop", queue="work")
def noop(payload: object) -> None:
    return None
