"""The benchmark's worker app: one no-op task. Settings come from the environment."""

from __future__ import annotations

from typing import Any

from conveyor.app import Conveyor
from conveyor.bench import QUEUE, TASK

app = Conveyor()


@app.task(name=TASK, queue=QUEUE, max_attempts=1)
async def noop(payload: Any) -> None:
    return None
