"""Table and JSON output for run.py (standard library only)."""

from __future__ import annotations

from typing import Any

MAIN_PACKAGE = {"taskiq": "taskiq-redis"}
HEADERS = [
    "peer",
    "version",
    "enqueue/s",
    "drain/s (2 procs)",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "Conveyor drain is",
    "survives Redis restart",
]


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def peer_version(result: dict[str, Any]) -> str:
    versions = result.get("versions") or {}
    peer = result.get("peer", "")
    text = versions.get(peer, "?")
    extra = MAIN_PACKAGE.get(peer)
    if extra and extra in versions:
        text += f" (+{extra} {versions[extra]})"
    return text


def conveyor_drain(conveyor: dict[str, Any]) -> float | None:
    value = (conveyor.get("drain") or {}).get("end_to_end_jobs_per_s")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def durability_text(result: dict[str, Any]) -> str:
    if "durable" not in result:
        return "?"
    text = "yes" if result["durable"] else "no"
    check = result.get("durability_check")
    if isinstance(check, dict) and "survived" in check:
        text += f" (checked: {check['survived']}/{check['enqueued']})"
    elif isinstance(check, dict) and check.get("error"):
        text += " (check failed)"
    return text


def peer_row(result: dict[str, Any], conveyor_rate: float | None) -> list[str]:
    if not result.get("ok"):
        return [
            result.get("peer", "?"),
            peer_version(result),
            "FAILED",
            "-",
            "-",
            "-",
            "-",
            "",
            durability_text(result),
        ]
    drain = result.get("drain") or {}
    lat = result.get("latency") or {}
    rate = drain.get("jobs_per_s")
    drain_text = _num(rate)
    if drain.get("timed_out"):
        drain_text += f" (timeout, {drain.get('done')}/{drain.get('target')})"
    lat_mark = ""
    if isinstance(rate, int | float) and rate < float(lat.get("rate_target") or 0):
        lat_mark = "*"  # offered faster than it drains: latency is mostly queueing
    ratio = "n/a"
    if conveyor_rate and isinstance(rate, int | float) and rate > 0:
        ratio = f"{conveyor_rate / rate:.1f}x"
    return [
        result["peer"],
        peer_version(result),
        _num((result.get("enqueue") or {}).get("jobs_per_s")),
        drain_text,
        _num(lat.get("p50"), 1) + lat_mark,
        _num(lat.get("p95"), 1) + lat_mark,
        _num(lat.get("p99"), 1) + lat_mark,
        ratio,
        durability_text(result),
    ]


def conveyor_row(conveyor: dict[str, Any]) -> list[str]:
    if not conveyor.get("available"):
        return ["conveyor", "not available", "-", "-", "-", "-", "-", "", "yes (PostgreSQL)"]
    drain = conveyor.get("drain") or {}
    lat = ((conveyor.get("latency") or {}).get("latency_ms") or {}).get("enqueue_to_start") or {}
    return [
        "conveyor",
        str(conveyor.get("version", "?")),
        _num(drain.get("enqueue_jobs_per_s")),
        _num(drain.get("end_to_end_jobs_per_s")),
        _num(lat.get("p50"), 1),
        _num(lat.get("p95"), 1),
        _num(lat.get("p99"), 1),
        "1.0x",
        "yes (PostgreSQL)",
    ]


def render_table(conveyor: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    rate = conveyor_drain(conveyor)
    rows = [HEADERS, conveyor_row(conveyor)] + [peer_row(r, rate) for r in peers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 or i == len(row) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_notes(conveyor: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    lines = []
    if not conveyor.get("available"):
        lines.append(f"Conveyor not available: {conveyor.get('error', '?')}")
    if any("*" in cell for r in peers for cell in peer_row(r, None)[4:7]):
        lines.append(
            "* offered rate is above this peer's drain throughput, so its latency "
            "is mostly time spent queued"
        )
    lines.append(
        "drain/s: steady-state, from the first completed job to the last; Conveyor: "
        "`conveyor bench --drain` (resume of the pre-filled queue to last completion)"
    )
    lines.append("Worker settings:")
    for result in peers:
        lines.append(f"  {result.get('peer')}: {result.get('settings', '?')}")
    return "\n".join(lines)
