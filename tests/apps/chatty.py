"""A test app whose handlers log through the standard `logging` module, as an
application's own code does: the log-context tests check that those lines carry the
job's fields. Each line names the job it was logged for, so a line carrying another
job's fields is caught."""

from __future__ import annotations

import logging
from typing import Any

from conveyor import Conveyor, JobContext, RetryPolicy

app = Conveyor()
log = logging.getLogger("myapp")


@app.task(name="say_sync", queue="chat", max_attempts=1)
def say_sync(payload: dict[str, Any], ctx: JobContext) -> None:
    log.info("hello from %s", ctx.job_id)


@app.task(name="say_async", queue="chat", max_attempts=1)
async def say_async(payload: dict[str, Any], ctx: JobContext) -> None:
    log.info("hello from %s", ctx.job_id)


@app.task(name="always_fails", queue="chat", max_attempts=2, retry=RetryPolicy(base=0.05, cap=0.1))
def always_fails(payload: dict[str, Any], ctx: JobContext) -> None:
    raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
