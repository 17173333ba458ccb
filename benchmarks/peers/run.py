#!/usr/bin/env python3
"""Run the same no-op workload against Conveyor and its peers, on this machine, now.

    python3 benchmarks/peers/run.py --count 20000 --rate 1000 --latency-seconds 5 \
        --peers celery,rq,dramatiq,arq,saq,taskiq,procrastinate [--json out.json]

Standard library only.  Each peer runs from its own virtualenv (.venvs/<peer>, created
on demand from requirements/<peer>.txt) through adapters/launch.py.  See README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness_util as hu
import report

PEERS = ["celery", "rq", "dramatiq", "arq", "saq", "taskiq", "procrastinate"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20000, help="jobs for enqueue + drain")
    p.add_argument("--rate", type=float, default=1000.0, help="offered jobs/s (latency)")
    p.add_argument("--latency-seconds", type=float, default=5.0)
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    p.add_argument("--json", type=Path, default=None, help="write raw results here")
    p.add_argument(
        "--job-timeout",
        type=float,
        default=180.0,
        help="max seconds to wait for jobs to finish, per phase",
    )
    p.add_argument(
        "--check-durability",
        action="store_true",
        help="also enqueue 100 jobs on a private non-persistent redis-server, "
        "restart it, and count the jobs that still run",
    )
    p.add_argument("--skip-install", action="store_true", help="do not create/update venvs")
    p.add_argument("--no-conveyor", action="store_true")
    p.add_argument("--conveyor", type=Path, default=hu.ROOT / ".venv" / "bin" / "conveyor")
    p.add_argument("--conveyor-args", default="", help="extra args for `conveyor bench`")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--broker-db", type=int, default=12, help="Redis db for the peers' queues")
    p.add_argument("--counter-db", type=int, default=13, help="Redis db for completion counts")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    args = p.parse_args()
    unknown = set(args.peers.split(",")) - set(PEERS)
    if unknown:
        p.error(f"unknown peers: {', '.join(sorted(unknown))}")
    if 0 in (args.broker_db, args.counter_db) or args.broker_db == args.counter_db:
        p.error("--broker-db and --counter-db must differ and must not be 0")
    return args


def adapter_env(args: argparse.Namespace, peer: str, broker_port: int | None = None) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "BENCH_BROKER_PORT": str(broker_port or args.redis_port),
            "BENCH_BROKER_DB": str(args.broker_db),
            "BENCH_COUNTER_PORT": str(args.redis_port),
            "BENCH_COUNTER_DB": str(args.counter_db),
            "BENCH_PG_DSN": f"host={hu.HOST} port={args.pg_port} user={args.pg_user}",
            "BENCH_PG_DBNAME": f"bench_peer_{peer}",
            "BENCH_LOG_DIR": str(hu.LOGS),
        }
    )
    return env


def run_adapter(
    args: argparse.Namespace,
    peer: str,
    mode: str,
    count: int,
    env: dict,
    timeout: float,
    job_timeout: float | None = None,
) -> dict[str, Any]:
    pidfile = hu.LOGS / f"{peer}.pids"
    argv = [
        str(hu.venv_python(peer)),
        str(hu.ADAPTERS / "launch.py"),
        f"{peer}_peer",
        "--mode",
        mode,
        "--count",
        str(count),
        "--rate",
        str(args.rate),
        "--latency-seconds",
        str(args.latency_seconds),
        "--timeout",
        str(job_timeout or args.job_timeout),
        "--pidfile",
        str(pidfile),
    ]
    try:
        return hu.run_json_command(
            argv,
            timeout,
            env=env,
            cwd=hu.ADAPTERS,
            log=hu.LOGS / f"{peer}-adapter.log",
            prefix=hu.RESULT_PREFIX,
        )
    finally:
        hu.kill_recorded_workers(pidfile)


def check_durability(args: argparse.Namespace, peer: str) -> dict[str, Any]:
    server = hu.PrivateRedis()
    try:
        server.start()
        env = adapter_env(args, peer, broker_port=server.port)
        enq = run_adapter(args, peer, "enqueue", 100, env, 120)
        if not enq.get("ok"):
            return {"error": f"enqueue: {enq.get('error')}"}
        server.restart()
        drained = run_adapter(args, peer, "drain", 100, env, 120, job_timeout=15)
        run_adapter(args, peer, "cleanup", 0, env, 60)
        if not drained.get("ok"):
            return {"error": f"drain: {drained.get('error')}"}
        return {
            "enqueued": 100,
            "survived": (drained.get("drain") or {}).get("done", 0),
            "redis_port": server.port,
        }
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        server.close()


def run_peer(args: argparse.Namespace, peer: str) -> dict[str, Any]:
    try:
        if not args.skip_install:
            hu.ensure_venv(peer)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"peer": peer, "ok": False, "error": f"install failed: {exc}"}
    if not hu.venv_python(peer).exists():
        return {"peer": peer, "ok": False, "error": "virtualenv missing (--skip-install)"}
    env = adapter_env(args, peer)
    budget = 2 * args.job_timeout + args.latency_seconds + 180
    print(f"[{peer}] running (count={args.count}, rate={args.rate:g}/s)", flush=True)
    t0 = time.monotonic()
    result = run_adapter(args, peer, "bench", args.count, env, budget)
    run_adapter(args, peer, "cleanup", 0, env, 60)
    result.setdefault("peer", peer)
    result["harness_seconds"] = round(time.monotonic() - t0, 1)
    if args.check_durability:
        print(f"[{peer}] durability check", flush=True)
        result["durability_check"] = check_durability(args, peer)
    return result


def run_conveyor(args: argparse.Namespace) -> dict[str, Any]:
    exe = args.conveyor
    if args.no_conveyor:
        return {"available": False, "error": "skipped (--no-conveyor)"}
    if not exe.exists():
        return {"available": False, "error": f"{exe} not found"}
    extra = shlex.split(args.conveyor_args)
    log = hu.LOGS / "conveyor.log"
    budget = 2 * args.job_timeout + 120
    print("[conveyor] running", flush=True)
    # --drain: enqueue into a paused queue, then time the drain alone, as for the peers.
    drain = hu.run_json_command(
        [
            str(exe),
            "bench",
            "--count",
            str(args.count),
            "--processes",
            "2",
            "--drain",
            "--json",
            *extra,
        ],
        budget,
        log=log,
    )
    out: dict[str, Any] = {"available": False, "drain": drain}
    if not isinstance(drain.get("end_to_end_jobs_per_s"), int | float):
        out["error"] = str(drain.get("error", "no end_to_end_jobs_per_s in its JSON"))
        return out
    out["available"] = True
    offered = max(1, int(args.rate * args.latency_seconds))
    out["latency"] = hu.run_json_command(
        [str(exe), "bench", "--count", str(offered), "--rate", f"{args.rate:g}", "--json", *extra],
        budget + args.latency_seconds,
        log=log,
    )
    out["version"] = _plain_version(exe)
    return out


def _plain_version(exe: Path) -> str:
    try:
        text = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return text.split()[-1] if text else "?"


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the running adapter and its workers are killed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    hu.LOGS.mkdir(parents=True, exist_ok=True)
    peers = [p for p in PEERS if p in args.peers.split(",")]
    started = time.time()
    conveyor = run_conveyor(args)
    results = [run_peer(args, peer) for peer in peers]
    print()
    print(
        f"count={args.count}  latency: {args.rate:g} jobs/s offered for "
        f"{args.latency_seconds:g}s  machine: {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(report.render_table(conveyor, results))
    print()
    print(report.render_notes(conveyor, results))
    for r in results:
        if not r.get("ok"):
            print(f"\n{r.get('peer')} failed: {r.get('error')}  (logs in {hu.LOGS})")
    if args.json:
        payload = {
            "started_at": started,
            "params": {k: str(v) for k, v in vars(args).items()},
            "machine": hu.machine_info(),
            "conveyor": conveyor,
            "peer_versions": {r.get("peer"): r.get("versions") for r in results},
            "peers": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"\nraw results written to {args.json}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
