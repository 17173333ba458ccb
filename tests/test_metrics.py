"""Prometheus figures after a known workload, from a two-process worker and a queuer."""

from __future__ import annotations

import urllib.request
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.app import Conveyor
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, free_port

pytestmark = pytest.mark.fault


def scrape(port: int) -> dict[str, float]:
    """Samples summed by name and labels we care about ("name{queue,task}")."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            key = f"{sample.name}{{{labels}}}"
            if "le" not in sample.labels:
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


async def test_metric_totals_after_a_known_workload(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(recording.app.tasks)
    app.enqueue_many("job", [{"n": n} for n in range(40)])
    app.enqueue_many("job", [{"fail": True}] * 5)  # 3 attempts each, then dead
    queuer_port, worker_port = free_port(), free_port()
    procs.queuer("--health-port", str(queuer_port))
    procs.conveyor(
        "worker",
        "--app",
        "tests.apps.recording:app",
        "--queues",
        "work",
        "--processes",
        "2",
        "--concurrency",
        "4",
        "--health-port",
        str(worker_port),
        name="worker",
    )

    def finished() -> bool:
        row = db.execute(
            b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')"
        ).fetchone()
        return row == (45,)

    await wait_until(finished, timeout=60, message="the workload")
    labels = "{queue=work,task=job}"

    def worker_totals_settled() -> bool:
        got = scrape(worker_port)
        return (
            got.get(f"jobs_completed_total{labels}") == 40
            and got.get(f"jobs_dead_total{labels}") == 5
        )

    await wait_until(worker_totals_settled, message="worker metrics")
    worker = scrape(worker_port)
    assert worker[f"jobs_failed_total{labels}"] == 15
    assert worker[f"jobs_retried_total{labels}"] == 10
    assert worker[f"job_processing_duration_seconds_count{labels}"] == 55
    assert worker["job_wait_seconds_count{queue=work}"] == 55
    pids = db.execute(b"SELECT count(DISTINCT pid) FROM executions").fetchone()
    assert pids == (2,), "both processes ran jobs, and the totals above add them up"
    queuer = scrape(queuer_port)
    assert queuer["jobs_dispatched_total{queue=work}"] >= 55
