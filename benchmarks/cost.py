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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.bench import QUEUE, TASK
from conveyor.config import load_settings
from conveyor.launch import Launcher, reset_namespace, settings_env, wipe_namespace
from conveyor.store.migrate import migrate
from conveyor.store.tools import ToolStatements

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.cost_measure import (
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

SCHEMA = "cost_bench"
PREFIX = "cost_bench:"
ENQUEUE_BATCH = 1000
WINDOWS = ("enqueue", "drain", "total")
# (key, label, unit): the order of the table; CPU keys follow.
FIGURES = (
    ("wal_bytes", "WAL bytes", "per job"),
    ("wal_fpi_bytes", "  of which full-page images", "per job"),
    ("heap_row_writes", "heap row writes (ins+upd+del)", "per job"),
    ("heap_inserts", "  inserts", "per job"),
    ("heap_updates", "  updates", "per job"),
    ("heap_hot_updates", "    of which HOT", "per job"),
    ("heap_deletes", "  deletes", "per job"),
    ("index_entries", "index entries", "per job"),
    ("commits", "commits", "per job"),
)
CPU_COMPONENTS = ("client", "postgres backends", "postgres background", "queuer", "workers")


def raw_figures(
    before: Snapshot, after: Snapshot, wal: WalShare, cpu: dict[str, float], indexes: dict[str, int]
) -> dict[str, float]:
    """The window's totals: counts, bytes, CPU seconds; per-table and per-index detail
    under `table:` and `index:` keys."""
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
    settings: Any,
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
    if not harness.walinspect:
        notes.append("no pg_walinspect: WAL is cluster-wide and index entries are estimated")
    raws = {"enqueue": enqueue, "drain": drain, "total": total}
    return {name: per_job(raw, args.count) for name, raw in raws.items()}, notes


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def _counted(harness: Harness, call: Any) -> int:
    harness.commits += 1  # one statement on the harness's autocommit connection
    return int(await call)


async def _wait(launcher: Launcher, read: Any, target: int, within: float = 120.0) -> None:
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


def summarise(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per window and figure: the median, min and max over the rounds."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for window in WINDOWS:
        keys = sorted({key for one in rounds for key in one[window]})
        summary[window] = {}
        for key in keys:
            values = [one[window].get(key, 0.0) for one in rounds]
            summary[window][key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return summary


def _cell(stats: dict[str, float] | None, digits: int, rounds: int) -> str:
    if stats is None:
        return "-"
    text = f"{stats['median']:,.{digits}f}"
    if rounds > 1:
        text += f" ({stats['min']:,.{digits}f}-{stats['max']:,.{digits}f})"
    return text


def render(summary: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> str:
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, key: str, digits: int) -> None:
        cells = [_cell(summary[w].get(key), digits, args.rounds) for w in WINDOWS]
        if any(cell != "-" for cell in cells):
            rows.append((label, cells[0], cells[1], cells[2]))

    for key, label, _unit in FIGURES:
        add(label, key, 0 if key.startswith("wal") else 2)
    for component in CPU_COMPONENTS:
        add(f"CPU s per 1,000 jobs: {component}", f"cpu:{component}", 3)
    add("WAL bytes, whole server (other databases too)", "wal_cluster_bytes", 0)
    details = sorted({k for w in WINDOWS for k in summary[w] if k.startswith(("table:", "index:"))})
    for key in details:
        kind, _, name = key.partition(":")
        add(f"{'rows written' if kind == 'table' else 'entries'}: {name}", key, 2)
    header = ("per job", "enqueue", "drain", "total")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    spread = " (median, min-max of the rounds)" if args.rounds > 1 else ""
    lines = [
        f"{args.count:,} no-op jobs, {args.processes} worker processes, "
        f"{args.rounds} round(s){spread}:",
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ),
    ]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


METHOD = {
    "wal_bytes": "WAL records (with padding) of the scratch database's relations and of "
    "transactions that touched them, read back with pg_walinspect; without it, the whole "
    "server's LSN difference",
    "wal_fpi_bytes": "full-page images inside those records (each window starts with a CHECKPOINT)",
    "heap_row_writes": "n_tup_ins + n_tup_upd + n_tup_del of pg_stat_user_tables, every table "
    "of the schema; HOT from n_tup_hot_upd",
    "index_entries": "btree leaf insertions (INSERT_LEAF, INSERT_POST, leaf SPLIT) counted in "
    "the same WAL records, per index; without pg_walinspect, estimated as (inserts + non-HOT "
    "updates) x indexes of the table, an upper bound",
    "commits": "xact_commit of pg_stat_database for the scratch database, minus the "
    "benchmark's own statements",
    "cpu": "utime + stime from /proc/<pid>/stat: the enqueuing process (client), the scratch "
    "database's backends, the server's checkpointer, background writer and WAL writer "
    "(shared with every database on the server), the queuer and the worker supervisor with "
    "its processes; per 1,000 jobs",
}


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
    rounds: list[dict[str, dict[str, float]]] = []
    notes: list[str] = []
    for number in range(args.rounds):
        figures, round_notes = await run_round(args)
        rounds.append(figures)
        notes.extend(f"round {number + 1}: {note}" for note in round_notes)
        _say(notes[-1])
    summary = summarise(rounds)
    if args.json:
        options = {k: v for k, v in vars(args).items() if k not in ("json", "database_url")}
        document = {
            "options": options,
            "method": METHOD,
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
