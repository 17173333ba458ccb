"""The queue gauges of /metrics come from PostgreSQL in every process that serves them:
web (alone, with no queuer at all), queuer and worker supervisor agree with the rows."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.config import Settings
from conveyor.launch import env_name
from conveyor.probes import health_app
from conveyor.queue_gauges import QueueGauges
from conveyor.store.migrate import migrate
from conveyor.vocabulary import DISPATCHED, RUNNING
from tests.conftest import wait_until
from tests.factories import Db, add_job, add_worker
from tests.processes import Processes, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
QUEUE_FAMILIES = (
    "queue_length",
    "oldest_job_age_seconds",
    "jobs_running",
    "workers_live",
    "queue_target_seconds",
    "oldest_job_age_by_lane_seconds",
    "lane_target_seconds",
)
# Fabricated below: the oldest waiting job of "email-sending" became ready this long ago.
OLDEST_AGE = 600.0
DEFAULT_TARGET = 45.0


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # A fabricated worker row must stay live for the whole test: its heartbeat never moves.
    result = settings_factory(
        **{"worker.dead_after": 3600.0, "thresholds.default_target": DEFAULT_TARGET}
    )
    migrate(result.database.url, result.database.schema_name)
    return result


def fabricate(db: Db) -> None:
    """email-sending: 2 high (one ready for OLDEST_AGE s), 3 normal, 1 low already in
    Redis, 1 scheduled for later (not waiting), 2 running; one live worker, one silent and
    one stopped. idle: 1 waiting job and no worker."""
    add_job(db, "email-sending", priority=10, age=OLDEST_AGE)
    add_job(db, "email-sending", priority=10, age=5)
    for _ in range(3):
        add_job(db, "email-sending", priority=100, age=30)
    add_job(db, "email-sending", priority=200, status=DISPATCHED, age=10)
    add_job(db, "email-sending", run_in=3600)
    add_worker(db, "live-a", ["email-sending", "idle-not"])
    add_worker(db, "silent", ["email-sending", "idle"], silent_for=7200)
    add_worker(db, "gone", ["idle"], stopped=True)
    for _ in range(2):
        add_job(db, "email-sending", status=RUNNING, worker="live-a")
    add_job(db, "idle", priority=100, age=1)


EXPECTED = {
    ("queue_length", (("lane", "high"), ("queue", "email-sending"))): 2,
    ("queue_length", (("lane", "normal"), ("queue", "email-sending"))): 3,
    ("queue_length", (("lane", "low"), ("queue", "email-sending"))): 1,
    ("queue_length", (("lane", "normal"), ("queue", "idle"))): 1,
    ("queue_length", (("lane", "high"), ("queue", "idle"))): 0,
    ("jobs_running", (("queue", "email-sending"),)): 2,
    ("jobs_running", (("queue", "idle"),)): 0,
    ("workers_live", (("queue", "email-sending"),)): 1,
    ("workers_live", (("queue", "idle"),)): 0,
    ("queue_target_seconds", (("queue", "email-sending"),)): 300,  # the specification's
    ("queue_target_seconds", (("queue", "idle"),)): DEFAULT_TARGET,
    ("lane_target_seconds", (("lane", "high"), ("queue", "email-sending"))): 60,
    ("lane_target_seconds", (("lane", "low"), ("queue", "email-sending"))): 1800,
    ("lane_target_seconds", (("lane", "low"), ("queue", "idle"))): DEFAULT_TARGET,
    ("oldest_job_age_by_lane_seconds", (("lane", "high"), ("queue", "idle"))): 0,
}


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"{key} is reported twice"
            found[key] = sample.value
    return found


def scrape(port: int) -> Samples | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return parse(reply.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def agrees_with_fabrication(samples: Samples) -> bool:
    return all(samples.get(key) == value for key, value in EXPECTED.items())


def oldest(samples: Samples, queue: str) -> float:
    return samples[("oldest_job_age_seconds", (("queue", queue),))]


async def test_the_collector_reads_the_queues_from_postgres(settings: Settings, db: Db) -> None:
    fabricate(db)
    now = [1000.0]
    gauges = QueueGauges(settings, refresh_seconds=5, drop_after=60, clock=lambda: now[0])
    assert parse_collected(gauges) == {}, "nothing before the first read"
    await gauges.refresh()
    samples = parse_collected(gauges)
    assert agrees_with_fabrication(samples), samples
    # The first read and the figures it took: the ages come from PostgreSQL's clock.
    assert OLDEST_AGE <= oldest(samples, "email-sending") < OLDEST_AGE + 60
    assert 1 <= oldest(samples, "idle") < 60
    by_lane = samples[
        ("oldest_job_age_by_lane_seconds", (("lane", "normal"), ("queue", "email-sending")))
    ]
    assert 30 <= by_lane < 90, "the normal lane's own oldest, not the queue's"
    assert samples[("queue_gauges_age_seconds", ())] == 0

    add_job(db, "idle", priority=10)
    now[0] += 4
    await gauges.refresh()  # within the refresh interval: no read
    assert parse_collected(gauges)[("queue_length", (("lane", "high"), ("queue", "idle")))] == 0
    now[0] += 1
    await gauges.refresh()
    assert parse_collected(gauges)[("queue_length", (("lane", "high"), ("queue", "idle")))] == 1

    db.execute(b"DELETE FROM jobs WHERE queue_name = %s", ("idle",))
    now[0] += 5
    await gauges.refresh()
    emptied = parse_collected(gauges)
    assert emptied[("queue_length", (("lane", "normal"), ("queue", "idle")))] == 0, "0, not gone"
    assert oldest(emptied, "idle") == 0


async def test_without_postgres_the_gauges_age_then_disappear(
    settings: Settings, db: Db, settings_factory: Callable[..., Settings]
) -> None:
    fabricate(db)
    now = [1000.0]
    gauges = QueueGauges(settings, refresh_seconds=5, drop_after=60, clock=lambda: now[0])
    await gauges.refresh()
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    gauges.settings = settings_factory(
        **{"database.url": unreachable, "thresholds.default_target": DEFAULT_TARGET}
    )
    now[0] += 30
    await gauges.refresh()  # fails, logs, raises nothing
    samples = parse_collected(gauges)
    assert agrees_with_fabrication(samples), "the last figures, while they are recent"
    assert samples[("queue_gauges_age_seconds", ())] == 30
    now[0] += 31
    await gauges.refresh()
    samples = parse_collected(gauges)
    assert samples == {("queue_gauges_age_seconds", ()): 61}, "old figures are left out"
    gauges.settings = settings
    now[0] += 5
    await gauges.refresh()
    assert agrees_with_fabrication(parse_collected(gauges))


async def test_health_queue_gauges_off_leaves_them_out_of_metrics(
    settings_factory: Callable[..., Settings], db: Db
) -> None:
    fabricate(db)
    for enabled in (True, False):
        settings = settings_factory(**{"health.queue_gauges": enabled})
        transport = httpx.ASGITransport(app=health_app(settings, lambda: None))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            reply = await http.get("/metrics")
        names = {name for name, _ in parse(reply.text)}
        assert reply.status_code == 200 and "process_cpu_seconds_total" in names
        assert (set(QUEUE_FAMILIES) <= names) is enabled, enabled


def parse_collected(gauges: QueueGauges) -> Samples:
    found: Samples = {}
    for family in gauges.collect():
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.fault
async def test_every_process_serving_metrics_reports_the_same_queue_figures(
    procs: Processes, db: Db
) -> None:
    fabricate(db)
    web_port, web_health, queuer_health, worker_health = (free_port() for _ in range(4))
    target = {env_name("thresholds.default_target"): str(DEFAULT_TARGET)}
    procs.conveyor(
        "web", "--port", str(web_port), "--health-port", str(web_health), name="web", **target
    )

    # The web process alone: no queuer has ever run.
    def web_agrees() -> bool:
        samples = scrape(web_health)
        return samples is not None and agrees_with_fabrication(samples)

    await wait_until(web_agrees, timeout=30, message="the web process's queue gauges")
    alone = scrape(web_health)
    assert alone is not None
    assert OLDEST_AGE <= oldest(alone, "email-sending") < OLDEST_AGE + 60
    public = scrape(web_port)
    assert public is not None and ("process_cpu_seconds_total", ()) in public
    assert not {name for name, _ in public} & set(QUEUE_FAMILIES), "not on a public port"
    # Maintenance would rescue the fabricated running jobs, whose worker never heartbeats.
    procs.queuer("--no-maintenance", "--health-port", str(queuer_health), **target)
    procs.conveyor(
        "worker",
        *("--app", "tests.apps.recording:app", "--queues", "work"),
        *("--processes", "2", "--health-port", str(worker_health)),
        name="worker",
        **target,
    )
    serving_work = {("workers_live", (("queue", "work"),)): 2.0}

    def all_agree() -> bool:
        found = [scrape(port) for port in (web_health, queuer_health, worker_health)]
        return all(
            samples is not None
            and agrees_with_fabrication(samples)
            and all(samples.get(key) == value for key, value in serving_work.items())
            for samples in found
        )

    await wait_until(all_agree, timeout=60, message="the same figures from every process")
    dispatched = db.execute(
        b"SELECT count(*) FROM jobs WHERE status = %s", (DISPATCHED,)
    ).fetchone()
    assert dispatched is not None and dispatched[0] >= 1, "the queuer ran: waiting still counts"
    for port in (queuer_health, worker_health):
        samples = scrape(port)
        assert samples is not None
        assert OLDEST_AGE <= oldest(samples, "email-sending") < OLDEST_AGE + 60
        assert set(QUEUE_FAMILIES) <= {name for name, _ in samples}
