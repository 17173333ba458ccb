"""A test app whose handlers record every execution in an append-only table.

Worker subprocesses import it as `tests.apps.recording:app`; settings come from the
environment the test sets (schema, key prefix, fast intervals). Each payload says how
the handler should behave, so one app serves every fault scenario.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import threading
import time
from typing import Any

import psycopg_pool

from conveyor import Conveyor, JobContext, RetryPolicy

app = Conveyor()
_schema = app.settings.database.schema_name
_pool: psycopg_pool.ConnectionPool | None = None
_pool_lock = threading.Lock()
_RECORD_EXECUTION = (
    f'INSERT INTO "{_schema}".executions (job_id, attempt, pid) VALUES (%s, %s, %s)'.encode()
)
_GATE_OPEN = f'SELECT EXISTS (SELECT FROM "{_schema}".gates WHERE name = %s)'.encode()
_RECORD_EFFECT = (
    f'INSERT INTO "{_schema}".effects (job_id) VALUES (%s) ON CONFLICT DO NOTHING'.encode()
)


def pool() -> psycopg_pool.ConnectionPool:
    global _pool
    with _pool_lock:  # handlers run in threads: one pool, not one per first caller
        if _pool is None:
            _pool = _new_pool()
    return _pool


def _new_pool() -> psycopg_pool.ConnectionPool:
    created = psycopg_pool.ConnectionPool(
        # Liveness tests send Conveyor through a proxy they freeze; the record of what
        # ran must not go silent with it.
        os.environ.get("CONVEYOR_TEST_RECORD_URL") or app.settings.database.url,
        min_size=1,
        # Two: a record is one short insert, and every worker process of every test
        # file running at the same time holds its own pool under max_connections.
        max_size=2,
        # Names are schema-qualified and nothing is prepared, so the recording works
        # through a transaction-mode PgBouncer too (which drops `options`).
        kwargs={
            "autocommit": True,
            "prepare_threshold": None,
            "application_name": "conveyor-test-recording",
        },
    )
    atexit.register(created.close)
    return created


def record(ctx: JobContext) -> None:
    with pool().connection() as conn:
        conn.execute(
            _RECORD_EXECUTION,
            (ctx.job_id, ctx.attempt, os.getpid()),
        )


def behave(payload: dict[str, Any], ctx: JobContext) -> None:
    record(ctx)
    if payload.get("effect"):
        # The idempotency key makes the side effect happen once, however often we run.
        with pool().connection() as conn:
            conn.execute(
                _RECORD_EFFECT,
                (ctx.job_id,),
            )
    if payload.get("kill_on_attempts") and ctx.attempt in payload["kill_on_attempts"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if payload.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if ctx.attempt in payload.get("hang_on_attempts", []):
        time.sleep(3600)  # holds its slot until the worker is killed
    deadline = time.monotonic() + float(payload.get("sleep", 0))
    while time.monotonic() < deadline:
        time.sleep(0.01)
    if payload.get("fail"):
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")


@app.task(name="job", queue="work", max_attempts=3, retry=RetryPolicy(base=0.05, cap=0.2))
def job(payload: dict[str, Any], ctx: JobContext) -> None:
    behave(payload, ctx)


@app.task(name="async_job", queue="work", max_attempts=3, retry=RetryPolicy(base=0.05, cap=0.2))
async def async_job(payload: dict[str, Any], ctx: JobContext) -> None:
    await asyncio.to_thread(record, ctx)
    await asyncio.sleep(float(payload.get("sleep", 0)))
    if payload.get("fail"):
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")


@app.task(name="poison", queue="poison", max_attempts=3)
def poison(payload: dict[str, Any], ctx: JobContext) -> None:
    record(ctx)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="loop_blocker", queue="work", max_attempts=3)
async def loop_blocker(payload: dict[str, Any], ctx: JobContext) -> None:
    """Blocks the worker's event loop (a CPU-bound async handler, as far as the loop can
    tell) on the attempts listed, which the watchdog must notice."""
    await asyncio.to_thread(record, ctx)
    if ctx.attempt in payload.get("block_on_attempts", []):
        time.sleep(float(payload.get("sleep", 3600)))


@app.task(name="batch_done", queue="work", max_attempts=3)
def batch_done(payload: dict[str, Any], ctx: JobContext) -> None:
    """A batch's callback (docs/batches.md): recorded, so a test can count its runs."""
    record(ctx)


def wait_for_gate(name: str, bound: float = 120.0) -> None:
    """Hold the handler until the test opens the gate (tests.processes.open_gate)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        with pool().connection() as conn:
            row = conn.execute(_GATE_OPEN, (name,)).fetchone()
        if row and row[0]:
            return
        time.sleep(0.02)
    raise TimeoutError(f"gate {name!r} never opened")


@app.task(name="chord_part", queue="work", max_attempts=3, retry=RetryPolicy(base=0.05, cap=0.2))
def chord_part(payload: dict[str, Any], ctx: JobContext) -> int:
    """A member of a chord: returns its number, after its gate opens if it names one."""
    record(ctx)
    if payload.get("gate"):
        wait_for_gate(payload["gate"])
    return int(payload["n"])


@app.task(name="chord_callback", queue="work", max_attempts=3)
def chord_callback(payload: Any, ctx: JobContext) -> dict[str, Any]:
    record(ctx)
    return {"count": len(ctx.parent_results), "results": ctx.parent_results}
