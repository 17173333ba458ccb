"""The tables of `benchmarks/cost.py`: per-job figures by window, the median and spread of
the rounds, and how each figure is measured."""

from __future__ import annotations

import argparse
import statistics

WINDOWS = ("enqueue", "drain", "total")
# (key, label) in the table's order; the CPU rows follow.
FIGURES = (
    ("wal_bytes", "WAL bytes"),
    ("wal_fpi_bytes", "  of which full-page images"),
    ("heap_row_writes", "heap row writes (ins+upd+del)"),
    ("heap_inserts", "  inserts"),
    ("heap_updates", "  updates"),
    ("heap_hot_updates", "    of which HOT"),
    ("heap_deletes", "  deletes"),
    ("index_entries", "index entries"),
    ("commits", "commits"),
)
# Issue 16's goals per successful single-attempt job, shown beside the measured totals.
TARGETS = {"wal_bytes": ("WAL bytes", 1200), "heap_row_writes": ("heap row writes", 3)}
CPU_COMPONENTS = ("client", "postgres backends", "postgres background", "queuer", "workers")


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
        total = summary["total"].get(key, {}).get("median", 0.0)
        once_per_run = key.startswith(("table:", "index:")) and total < 0.005
        once_per_run |= key.startswith("wal:") and total < 1  # catalogue writes, start-up
        if any(cell != "-" for cell in cells) and not once_per_run:
            rows.append((label, cells[0], cells[1], cells[2]))

    for key, label in FIGURES:
        add(label, key, 0 if key.startswith("wal") else 3 if key == "commits" else 2)
    for component in CPU_COMPONENTS:
        shared = " (whole server)" if component == "postgres background" else ""
        add(f"CPU s per 1,000 jobs: {component}{shared}", f"cpu:{component}", 3)
    add("WAL bytes, whole server (other databases too)", "wal_cluster_bytes", 0)
    detail = ("table:", "index:", "wal:")
    details = sorted({k for w in WINDOWS for k in summary[w] if k.startswith(detail)})
    labels = {"table": "rows written", "index": "entries", "wal": "WAL bytes"}
    for key in details:
        kind, _, name = key.partition(":")
        add(f"{labels[kind]}: {name}", key, 0 if kind == "wal" else 2)
    header = ("per job", "enqueue", "drain", "total")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    spread = " (median, min-max of the rounds)" if args.rounds > 1 else ""
    goals = "; ".join(
        f"{label} {summary['total'][key]['median']:,.{0 if key == 'wal_bytes' else 2}f}"
        f" (target <= {target:,})"
        for key, (label, target) in TARGETS.items()
    )
    lines = [
        f"per job, enqueue and drain together: {goals}",
        "",
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
    "wal_parts": "the same records by relation and, for tables, by record type (an index's "
    "records all count as its 'index' part); parts under 1 byte per job are left out",
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
