"""Enqueue and run one job with OpenTelemetry unimportable, as without the `otel` extra.

Run as `python -m tests.apps.without_otel` with the test's settings in the environment.
The import blocker comes before Conveyor is imported; the queuer and the worker run in
this process, so the blocker covers them too. Prints one JSON line for the test.
"""

from __future__ import annotations

import sys

sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import now raises

import asyncio  # noqa: E402
import json  # noqa: E402

from conveyor import Conveyor, tracing  # noqa: E402
from conveyor.queuer import Queuer  # noqa: E402
from conveyor.worker.runner import Worker, WorkerOptions  # noqa: E402

app = Conveyor()


@app.task(name="plain", queue="untraced")
def plain(payload: dict[str, int]) -> int:
    return payload["n"]


async def main() -> None:
    job_id = app.enqueue("plain", {"n": 1})
    queuer = await Queuer.open(app.settings, maintenance=False)
    worker = Worker(app.settings, app.tasks, WorkerOptions(queues=["untraced"], concurrency=1))
    stop = asyncio.Event()
    running = [asyncio.ensure_future(queuer.run(stop)), asyncio.ensure_future(worker.run(stop))]
    for _ in range(600):  # 30 s at most
        job = app.get_job(job_id)
        if job.finished:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*running)
    loaded = sorted(name for name, module in sys.modules.items() if "opentelemetry" in name)
    report = {
        "job_id": str(job_id),
        "status": job.status,
        "available": tracing.available(),
        "worker_traced": worker.tracing.active,
        "modules": {name: sys.modules[name] is not None for name in loaded},
    }
    print(json.dumps(report))
    app.close()


if __name__ == "__main__":
    asyncio.run(main())
