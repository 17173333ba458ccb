"""The autoscale benchmark's worker app: one task that waits as long as its payload says
(an I/O-bound handler). Settings come from the environment the benchmark sets."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.app import Conveyor

QUEUE = "autoscale-bench"
TASK = "autoscale_bench.wait"

app = Conveyor()


@app.task(name=TASK, queue=QUEUE, max_attempts=1)
async def wait(payload: Any) -> None:
    await asyncio.sleep(payload["ms"] / 1000)
