"""What PostgreSQL and Conveyor's processes do per job: WAL bytes, heap row writes, index
entries, commits, and CPU seconds per 1,000 jobs, for an enqueue of N no-op jobs and for
their drain, measured apart. Unlike jobs/s, these barely move on a busy machine.

    PYTHONPATH=src .venv/bin/python benchmarks/cost.py [--count 20000] [--processes 2]
        [--rounds 3] [--json] [--database-url URL] [--redis-url URL]

Each round creates a scratch database (`--database-name`, marked as scratch and dropped at
the end; a database without the mark is refused) on the server of --database-url, so that
the per-database statistics hold only this run, migrates it, and:

  1. enqueues N jobs with the normal client into a paused queue, no queuer or worker
     running (the enqueue window);
  2. starts a real queuer and a worker with --processes processes (as `conveyor bench`
     does), resumes the queue and waits until every job is completed (the drain window).

Each window starts with a CHECKPOINT, so that the full-page images in its WAL do not
depend on when the server last checkpointed. Statistics are read when no other session is
left in the scratch database (PostgreSQL 15 backends flush their counters on exit), so the
drain window includes the queuer's and workers' start-up and shutdown statements; its CPU
figures run from the resume to the last completion only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.bench import QUEUE, TASK
from conveyor.config import Settings, load_settings
from conveyor.errors import ScratchRefused
from conveyor.launch import Launcher, reset_namespace, settings_env, wipe_namespace
from conveyor.store.migrate import migrate
from conveyor.store.tools import ToolStatements

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.cost_measure import (
    DATABASE_NAME,
    CpuReading,
    Harness,
    Snapshot,
    TableWrites,
    WalShare,
    cpu_seconds,
    drop_scratch_database,
    reset_scratch_database,
    scratch_url,
)
from benchmarks.cost_report import METHOD, TARGETS, render, summarise

SCHEMA = "cost_bench"
PREFIX = "cost_bench:"
ENQUEUE_BATCH = 1000


def raw_figures(
    before: Snapshot, after: Snapshot, wal: WalShare, cpu: dict[str, float], indexes: dict[str, int]
) -> dict[str, float]:
    """The window's totals: counts, bytes, CPU seconds; per-table, per-index and per-record
    detail under `table:`, `index:` and `wal:` keys."""
    writes = {
        name: counts.minus(before.tables.get(name, TableWrites()))
        for name, counts in after.tables.items()
    }
    figures: dict[str, float] = {
        "wal_bytes": wal.bytes,
        "wal_fpi_bytes": wal.fpi_bytes,
        "wal_cluster_bytes": wal.cluster_bytes,
        "heap_inserts": sum(w.inserts for w in writes.values()),
        "heap_updates": sum(w.updates for w in writes.values()),
        "heap_hot_updates": sum(w.hot_updates for w in writes.values()),
        "heap_deletes": sum(w.deletes for w in writes.values()),
        # The harness's own statements (snapshots, polls) are not the queue's work.
        "commits": (after.commits - before.commits)
        - (after.harness_commits - before.harness_commits),
    }
    figures["heap_row_writes"] = (
        figures["heap_inserts"] + figures["heap_updates"] + figures["heap_deletes"]
    )
    for name, w in writes.items():
        if w.inserts + w.updates + w.deletes:
            figures[f"table:{name}"] = w.inserts + w.updates + w.deletes
    if wal.parts is not None:
        figures.update({f"wal:{part}": n for part, n in wal.parts.items()})
    if wal.index_entries is not None:
        figures["index_entries"] = sum(wal.index_entries.values())
        figures.update({f"index:{name}": n for name, n in wal.index_entries.items()})
    else:
        # An upper bound: a partial index whose predicate is false gets no entry.
        figures["index_entries"] = sum(
            (w.inserts + w.updates - w.hot_updates) * indexes.get(name, 0)
            for name, w in writes.items()
        )
    figures.update({f"cpu:{component}": seconds for component, seconds in cpu.items()})
    return figures


def per_job(raw: dict[str, float], count: int) -> dict[str, float]:
    return {k: v * 1000 / count if k.startswith("cpu:") else v / count for k, v in raw.items()}


async def run_round(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], list[str]]:
    """One enqueue and drain on a fresh scratch database: per-job figures by window."""
    url = scratch_url(args.database_url, args.database_name)
    configured = load_settings(
        env={}, overrides={"database.url": args.database_url, "redis.url": args.redis_url}
    )
    settings = load_settings(
        env={},
        overrides={
            "database.url": url,
            "redis.url": args.redis_url,
            "database.schema": SCHEMA,
            "redis.key_prefix": args.prefix,
            "log.level": "warning",
        },
    )
    reset_scratch_database(args.database_url, args.database_name)
    reset_namespace(url, SCHEMA, args.redis_url, args.prefix, configured)
    migrate(url, SCHEMA)
    harness = await Harness.connect(url, SCHEMA)
    tools = ToolStatements(None, SCHEMA, connection=harness.conn)
    try:
        await tools.ensure_queue(QUEUE)
        async with Admin(settings) as admin:
            await admin.pause(QUEUE, actor="cost benchmark")
        with tempfile.TemporaryDirectory(prefix="conveyor-cost-") as logs:
            launcher = Launcher(settings_env(settings, ("log.level",)), Path(logs))
            try:
                return await _windows(args, settings, harness, tools, launcher)
            finally:
                launcher.stop()
    finally:
        await harness.close()
        wipe_namespace(url, SCHEMA, args.redis_url, args.prefix, configured)
        if not args.keep:
            drop_scratch_database(args.database_url, args.database_name)


async def _windows(
    args: argparse.Namespace,
    settings: Settings,
    harness: Harness,
    tools: ToolStatements,
    launcher: Launcher,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    indexes = await harness.indexes_per_table()
    app = Conveyor(settings)
    app.task(name=TASK, queue=QUEUE, max_attempts=1)(_noop)
    _say(f"enqueueing {args.count:,} jobs")
    await harness.run("CHECKPOINT")
    s0 = await harness.snapshot()
    cpu0 = CpuReading({"client": cpu_seconds([os.getpid()]), **await harness.postgres_cpu()})
    try:
        for sent in range(0, args.count, ENQUEUE_BATCH):
            await app.aenqueue_many(TASK, [{}] * min(ENQUEUE_BATCH, args.count - sent))
        cpu1 = CpuReading({"client": cpu_seconds([os.getpid()]), **await harness.postgres_cpu()})
    finally:
        await app.aclose()
    await harness.run("CHECKPOINT")
    s1 = await harness.snapshot()
    _say("reading the enqueue's WAL; starting the queuer and workers")
    enqueue = raw_figures(s0, s1, await harness.wal_share(s0, s1), cpu1.since(cpu0), indexes)

    queuer = launcher.queuer()
    worker = launcher.worker("conveyor.bench.tasks:app", [QUEUE], args.processes, args.concurrency)
    await _wait(launcher, lambda: _counted(harness, tools.count_live_workers()), args.processes)

    async def processes() -> CpuReading:
        return CpuReading(
            {
                "queuer": cpu_seconds([queuer.pid], with_children=True),
                "workers": cpu_seconds([worker.pid], with_children=True),
                **await harness.postgres_cpu(),
            }
        )

    _say("draining")
    async with Admin(settings) as admin:
        cpu2 = await processes()
        started = time.monotonic()
        await admin.resume(QUEUE, actor="cost benchmark")
        await _wait(
            launcher,
            lambda: _counted(harness, tools.count_finished_jobs()),
            args.count,
            args.timeout,
        )
        seconds = time.monotonic() - started
        cpu3 = await processes()
    _say("stopping the queuer and workers; reading the drain's WAL")
    launcher.stop()
    s2 = await harness.snapshot()
    drain = raw_figures(s1, s2, await harness.wal_share(s1, s2), cpu3.since(cpu2), indexes)
    total = {k: enqueue.get(k, 0.0) + drain.get(k, 0.0) for k in {*enqueue, *drain}}
    notes = [f"drain {seconds:.1f} s ({args.count / seconds:,.0f} jobs/s, not the point here)"]
    completed = await _counted(harness, _completed(tools))
    if completed != args.count:  # the figures are meant for successful single attempts
        notes.append(f"only {completed:,} of {args.count:,} jobs completed (the rest dead)")
    if not harness.walinspect:
        notes.append("no pg_walinspect: WAL is cluster-wide and index entries are estimated")
    raws = {"enqueue": enqueue, "drain": drain, "total": total}
    return {name: per_job(raw, args.count) for name, raw in raws.items()}, notes


async def _completed(tools: ToolStatements) -> int:
    return (await tools.bench_summary()).completed


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def _counted(harness: Harness, call: Awaitable[int]) -> int:
    harness.commits += 1  # one statement on the harness's autocommit connection
    return int(await call)


async def _wait(
    launcher: Launcher, read: Callable[[], Awaitable[int]], target: int, within: float = 120.0
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if launcher.dead():
            raise RuntimeError(f"a benchmark process died:\n{launcher.logs()[-3000:]}")
        if await read() >= target:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"not reached within {within:.0f} s: {target}")


async def _noop(payload: Any) -> None:
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for a drain")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--database-name", default="conveyor_cost_bench")
    parser.add_argument("--prefix", default=PREFIX, help="the scratch Redis key prefix")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for name in ("count", "processes", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not DATABASE_NAME.fullmatch(args.database_name):
        parser.error("--database-name must be lower-case letters, digits and _ (63 at most)")
    rounds: list[dict[str, dict[str, float]]] = []
    notes: list[str] = []
    for number in range(args.rounds):
        try:
            figures, round_notes = await run_round(args)
        except (ValueError, ScratchRefused) as refused:  # a scratch name that is not ours
            sys.exit(f"cost.py: {refused}")
        rounds.append(figures)
        for note in round_notes:
            notes.append(f"round {number + 1}: {note}")
            _say(notes[-1])
    summary = summarise(rounds)
    if args.json:
        options = {
            k: v for k, v in vars(args).items() if k not in ("json", "database_url", "redis_url")
        }
        document = {
            "options": options,
            "method": METHOD,
            "targets": {key: target for key, (_label, target) in TARGETS.items()},
            "notes": notes,
            "summary": summary,
            "rounds": rounds,
        }
        print(json.dumps(document, indent=2))
    else:
        print(render(summary, args))
        print("\nhow each figure is measured:")
        for key, text in METHOD.items():
            print(f"  {key}: {text}")


if __name__ == "__main__":
    asyncio.run(main())
