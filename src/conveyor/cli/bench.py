"""`conveyor bench`: throughput and latency on real processes, from PostgreSQL's records."""

from __future__ import annotations

import asyncio
import signal
import sys

import click
import orjson
from rich.console import Console
from rich.table import Table

from conveyor.bench.run import BenchOptions, BenchResult, parse_priority, run_bench
from conveyor.cli.main import State, main, pass_state
from conveyor.durations import parse_duration
from conveyor.errors import ScratchRefused
from conveyor.limits import parse_rate


@main.command()
@click.option(
    "--count",
    type=click.IntRange(1, 10_000_000),
    default=10_000,
    show_default=True,
    help="Jobs to run.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Offer this many jobs per second (default: as fast as bulk enqueue goes).",
)
@click.option(
    "--priority",
    default="normal",
    show_default=True,
    help="high, normal, low, or a number from 0 to 1000.",
)
@click.option(
    "--timeout",
    default="300s",
    show_default=True,
    help="Give up waiting for completion after this long (e.g. 60s, 5m).",
)
@click.option(
    "--payload-size",
    type=click.IntRange(0, 1_000_000),
    default=0,
    show_default=True,
    help="Bytes of padding in each payload.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    # Swept on the benchmark machine (100, 300, 500) as the peers' settings were.
    help="Jobs at once per worker process.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Worker processes.",
)
@click.option(
    "--schema",
    default="conveyor_bench",
    show_default=True,
    help="Scratch schema, dropped and recreated: never the configured one, nor an existing "
    "schema an earlier bench or demo run did not create.",
)
@click.option(
    "--prefix",
    default="bench:",
    show_default=True,
    help="Scratch Redis key prefix, its keys deleted: never one reaching the configured "
    "prefix's keys.",
)
@click.option(
    "--drain",
    is_flag=True,
    help="Enqueue everything into a paused queue, then time the drain alone.",
)
@click.option(
    "--postgres-only",
    is_flag=True,
    help="Start the queuer and workers with an unreachable Redis: jobs are claimed "
    "straight from PostgreSQL (postgres-only mode).",
)
@click.option(
    "--rate-limit",
    metavar="RATE",
    help='A global rate limit on the bench queue ("100000/s"): the cost of the limited '
    "dispatch when the limit is above the drain rate.",
)
@click.option(
    "--key-concurrency",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Spread the jobs over 1,000 limit keys, each allowed this many at once: the cost "
    "of many key budgets in the limited dispatch.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def bench(
    state: State,
    count: int,
    rate: float | None,
    priority: str,
    timeout: str,
    payload_size: int,
    concurrency: int,
    processes: int,
    schema: str,
    prefix: str,
    drain: bool,
    postgres_only: bool,
    rate_limit: str | None,
    key_concurrency: int | None,
    as_json: bool,
) -> None:
    """Benchmark enqueue, end-to-end throughput and per-job latency on this machine."""
    try:
        options = BenchOptions(
            count=count,
            rate=rate,
            priority=parse_priority(priority),
            timeout=parse_duration(timeout),
            payload_size=payload_size,
            concurrency=concurrency,
            processes=processes,
            drain=drain,
            postgres_only=postgres_only,
            rate_limit=str(parse_rate(rate_limit)) if rate_limit is not None else None,
            key_concurrency=key_concurrency,
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    # What `conveyor worker` would use here: the live namespace the overrides must not hit.
    configured = state.settings()
    settings = state.settings(
        **{"database.schema": schema, "redis.key_prefix": prefix, "log.level": "warning"}
    )
    console = Console(stderr=True)

    def progress(stage: str, done: int, total: int) -> None:
        if not as_json and (done == total or done % max(1, total // 10) < 1000):
            console.print(f"  {stage}: {done:,}/{total:,}", highlight=False)

    # SIGTERM unwinds like Ctrl-C: the queuer and workers the bench started are stopped
    # (its `finally`), not left running on their own.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = asyncio.run(run_bench(settings, options, progress, configured=configured))
    except (RuntimeError, OSError, ScratchRefused) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    if as_json:
        sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        show(Console(), result)
    if result.timed_out or result.completed < result.count:
        sys.exit(1)


def show(console: Console, result: BenchResult) -> None:
    mode = result.mode + (", postgres-only" if result.options.get("postgres_only") else "")
    table = Table(title=f"conveyor bench: {result.count:,} jobs, {mode}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("completed", f"{result.completed:,}")
    table.add_row("enqueue", f"{result.enqueue_jobs_per_s:,.0f} jobs/s")
    table.add_row("end to end", f"{result.end_to_end_jobs_per_s:,.0f} jobs/s")
    for name, values in result.latency_ms.items():
        table.add_row(
            name.replace("_", " ") + " p50/p95/p99/max",
            " / ".join(f"{values[k]:.1f}" for k in ("p50", "p95", "p99", "max")) + " ms",
        )
    if "p99" in result.redis_ms:
        table.add_row(
            "Redis op p50/p99/max",
            f"{result.redis_ms['p50']:.2f} / {result.redis_ms['p99']:.2f} / "
            f"{result.redis_ms['max']:.2f} ms",
        )
    console.print(table)
