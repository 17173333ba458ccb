"""Redis failover (redis.failover_urls) and Redis Sentinel: the decision rule on its own,
then Lanes on private redis-servers, then real queuer and worker processes that lose their
Redis mid-run. Every process test ends with the queue check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from conveyor.admin import Admin
from conveyor.app import Conveyor
from conveyor.config import ConfigError, Settings, load_settings
from conveyor.errors import RedisUnavailable
from conveyor.lanes import Lanes
from conveyor.probes import survey_redis
from conveyor.queuer import Queuer
from conveyor.redis_choice import MAX_PROBE_GAP, Choice, redact
from conveyor.store.migrate import migrate
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes, RedisServer, create_recording_tables, queue_check
from tests.processes import terminal_snapshot as snapshot
from tests.servers import BlackholeProxy, SentinelSet, find_command

FAILED, ANSWERED = "fail", "ok"

# -- the rule, from tables of observations ------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # (time, what happened) -> the active index after the last event
        ([(0, "fail"), (4.9, "probe 0 1")], 0),  # not failing long enough: no probe yet
        ([(0, "fail"), (5, "probe 0 1")], 1),  # primary silent for 5 s: first that answers
        ([(0, "fail"), (5, "probe 0 0 1")], 2),  # the first backup is down too
        ([(0, "fail"), (5, "probe 0 0")], 0),  # nobody answers: stay and keep trying
        ([(0, "fail"), (5, "probe 1 1")], 0),  # the primary answers after all: stay
        ([(0, "fail"), (3, "ok"), (5, "fail"), (9, "probe 0 1")], 0),  # outage restarted at 5
        ([(0, "fail"), (3, "ok"), (5, "fail"), (10, "probe 0 1")], 1),
        # on the backup: back after 30 s of unbroken answers, one a second
        ([(0, "fail"), (5, "probe 0 1"), *[(6 + t, "primary 1") for t in range(30)]], 1),
        ([(0, "fail"), (5, "probe 0 1"), *[(6 + t, "primary 1") for t in range(31)]], 0),
        # the primary answers intermittently: never back (no flapping)
        (
            [(0, "fail"), (5, "probe 0 1")]
            + [(6 + t, "primary 1" if t % 10 else "primary 0") for t in range(120)],
            1,
        ),
        # a hole in the probes (nobody called) restarts the count
        (
            [(0, "fail"), (5, "probe 0 1")]
            + [(6 + t, "primary 1") for t in range(20)]
            + [(26 + MAX_PROBE_GAP + 1 + t, "primary 1") for t in range(20)],
            1,
        ),
        # the backup fails too: the primary, answering again, is first in order
        ([(0, "fail"), (5, "probe 0 1"), (6, "fail"), (11, "probe 1 1")], 0),
        # the backup fails and the primary is still down: the second backup
        ([(0, "fail"), (5, "probe 0 1 1"), (6, "fail"), (11, "probe 0 0 1")], 2),
    ],
)
def test_choice_follows_the_rule(events: list[tuple[float, str]], expected: int) -> None:
    choice = Choice(3, failover_after=5, failback_after=30)
    for now, event in events:
        kind, *answers = event.split()
        if kind == "fail":
            choice.failure(now)
        elif kind == "ok":
            choice.success()
        elif kind == "probe" and choice.probe_due(now):
            choice.probed([a == "1" for a in answers], now)
        elif kind == "primary" and choice.primary_probe_due(now):
            choice.primary_probed(answers == ["1"], now)
    assert choice.active == expected


def test_every_process_makes_the_same_choice_from_the_same_answers() -> None:
    """Determinism: the order decides, not timing or which process asks."""
    for answers in ([False, True, True], [False, False, True], [True, True, True]):
        chosen = set()
        for start in (0, 2.5, 7):
            choice = Choice(3, failover_after=1, failback_after=30)
            choice.failure(start)
            assert choice.probe_due(start + 1)
            choice.probed(answers, start + 1)
            chosen.add(choice.active)
        assert chosen == {answers.index(True)}


def test_a_single_endpoint_never_probes() -> None:
    choice = Choice(1, failover_after=1, failback_after=1)
    choice.failure(0)
    assert not choice.probe_due(100)


def test_redact_drops_the_password_only() -> None:
    assert redact("redis://:secret@h:6379/0") == "redis://h:6379/0"
    assert redact("rediss://user:secret@h:6380/2") == "rediss://user@h:6380/2"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


# -- configuration --------------------------------------------------------------------------


def test_backup_redis_url_and_sentinel_variables() -> None:
    env = {
        "BACKUP_REDIS_URL": "redis://b1:6379/0, redis://:pw@b2:6379/0",
        "REDIS_FAILOVER_AFTER": "2s",
    }
    redis = load_settings(env=env).redis
    assert redis.failover_urls == ["redis://b1:6379/0", "redis://:pw@b2:6379/0"]
    assert (redis.failover_after, redis.failback_after) == (2.0, 30.0)
    env = {"REDIS_SENTINEL_NODES": "10.0.0.7:26379,10.0.0.8:26379", "REDIS_SENTINEL_SERVICE": "q"}
    sentinel = load_settings(env=env).redis.sentinel
    assert sentinel is not None
    assert (sentinel.service, sentinel.nodes) == ("q", ["10.0.0.7:26379", "10.0.0.8:26379"])
    assert load_settings(env={"CONVEYOR_BACKUP_REDIS_URL": "redis://b:1/0"}).redis.failover_urls


@pytest.mark.parametrize(
    ("env", "key", "words"),
    [
        ({"BACKUP_REDIS_URL": "http://:pw@b"}, "redis.failover_urls", "entry 1 must start"),
        (
            {"BACKUP_REDIS_URL": "redis://b:1/0", "REDIS_SENTINEL_NODES": "s:26379"},
            "redis.failover_urls",
            "cannot both be set",
        ),
        ({"BACKUP_REDIS_URL": "redis://127.0.0.1:6379/0"}, "redis.failover_urls", "repeat"),
        ({"REDIS_SENTINEL_NODES": "nohost"}, "redis.sentinel.nodes", "host:port"),
        ({"REDIS_SENTINEL_SERVICE": "q"}, "redis.sentinel.nodes", "required"),
        ({"REDIS_FAILBACK_AFTER": "0s"}, "redis.failback_after", ""),
        ({"REDIS_SENTINEL": "x"}, "redis.sentinel", "configuration file"),
    ],
)
def test_bad_failover_settings_name_the_field(env: dict[str, str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    (issue,) = caught.value.errors
    assert issue.key == key and words in issue.message
    assert "pw" not in str(caught.value)


def test_sentinel_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('redis:\n  sentinel: {nodes: ["h:26379"], servce: x}\n')
    with pytest.raises(ConfigError, match="did you mean 'service'"):
        load_settings(path, env={})


# -- Lanes on private servers ----------------------------------------------------------------


@pytest.fixture
def two_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    servers = (RedisServer(tmp_path), RedisServer(tmp_path))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def failover_settings(url: str, *backups: str, **more: Any) -> Settings:
    values = {
        "redis.url": url,
        "redis.failover_urls": list(backups),
        "redis.failover_after": 0.5,
        "redis.failback_after": 1.5,
        **more,
    }
    return load_settings(env={}, overrides=values)


async def pop_until(lanes: Lanes, index: int, timeout: float = 30) -> None:
    """Keep popping (as a worker does) until the lanes use candidate `index`."""

    async def on_it() -> bool:
        with contextlib.suppress(RedisUnavailable):
            await lanes.pop(["nothing"], 1, 0.05)
        return lanes.endpoint.index == index

    await wait_until(on_it, timeout=timeout, message=f"the lanes to use candidate {index}")


@pytest.mark.fault
async def test_lanes_move_to_the_backup_and_back(
    two_redis: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = two_redis
    lanes = Lanes.open(failover_settings(primary.url, backup.url))
    try:
        await lanes.ping()
        primary.stop()
        await pop_until(lanes, 1)
        assert lanes.endpoint.on_backup and lanes.generation == 1
        assert REGISTRY.get_sample_value("redis_failovers_total", {"to": backup.url}) == 1
        for index, (url, value) in enumerate([(primary.url, 0), (backup.url, 1)]):
            labels = {"index": str(index), "url": url}
            assert REGISTRY.get_sample_value("redis_active_endpoint", labels) == value
        await lanes.push((await lanes.claim_epoch())[0], {lanes.keys.lane("q", "normal"): ["a"]})
        assert await lanes.pop([lanes.keys.lane("q", "normal")], 5, 0.1) == ["a"]
        primary.start()
        await pop_until(lanes, 0)
        assert not lanes.endpoint.on_backup and lanes.generation == 2
        await lanes.ping()
    finally:
        await lanes.close()


@pytest.mark.fault
async def test_a_silent_connection_fails_a_blocking_pop_and_is_dropped(
    two_redis: tuple[RedisServer, RedisServer],
) -> None:
    """A connection gone silent (no FIN, no RST) must not hold a blocking pop for
    redis-py's default ten retries: the pop fails after about socket_timeout + block, the
    connection is dropped, and the next pop works on a fresh one (the server is fine, so
    there is no failover)."""
    primary, backup = two_redis
    with BlackholeProxy("127.0.0.1", primary.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        settings = failover_settings(url, backup.url, **{"redis.socket_timeout": 1})
        lanes = Lanes.open(settings)
        try:
            await lanes.pop(["nothing"], 1, 0.05)  # a pooled connection, then silence
            proxy.freeze()
            with pytest.raises(RedisUnavailable):
                async with asyncio.timeout(8):  # ten retries would take about 20 s
                    await lanes.pop(["nothing"], 1, 0.5)
            assert await lanes.pop(["nothing"], 1, 0.05) == []
            assert lanes.endpoint.index == 0
        finally:
            await lanes.close()


@pytest.mark.fault
async def test_an_idle_pop_longer_than_the_socket_timeout_is_no_outage(
    two_redis: tuple[RedisServer, RedisServer],
) -> None:
    """redis-py reads a blocking reply under socket_timeout: a worker.fetch_timeout at or
    above it must not make a healthy, idle Redis look dead (and start a failover)."""
    primary, backup = two_redis
    settings = failover_settings(primary.url, backup.url, **{"redis.socket_timeout": 1.0})
    lanes = Lanes.open(settings)
    try:
        for _ in range(3):
            assert await lanes.pop(["nothing"], 1, 1.0) == []
        assert lanes.endpoint.index == 0 and lanes.endpoints.choice.idle
    finally:
        await lanes.close()


@pytest.mark.fault
async def test_the_queuer_rebuilds_a_backup_holding_an_old_epoch(
    settings_factory: Any,
    two_redis: tuple[RedisServer, RedisServer],
    db: psycopg.Connection[Any],
) -> None:
    """The backup still holds the epoch of an earlier stay: without the switch hook the
    queuer would adopt it and leave the jobs pushed into the dead primary to the
    reconciler. It re-queues them at once instead, and dispatches them into the backup."""
    primary, backup = two_redis
    settings: Settings = settings_factory(
        **{
            "redis.url": primary.url,
            "redis.failover_urls": [backup.url],
            "redis.failover_after": 0.5,
            "redis.failback_after": 60,
        }
    )
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    queuer = await Queuer.open(settings, maintenance=False)
    client = backup.client()
    try:
        ids = app.enqueue_many("job", [{}] * 10)
        assert await queuer.dispatch_once() == 10
        client.set(settings.redis.key_prefix + "conveyor:epoch", "from-an-earlier-failover")
        primary.stop()
        await pop_until(queuer.lanes, 1)
        await queuer.sync_epoch()
        assert queuer.epoch == "from-an-earlier-failover"
        assert queuer.counts["redis_rebuilds"] == 2  # the first push, then the switch
        statuses = db.execute(b"SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
        assert statuses == [("queued", 10)]
        assert await queuer.dispatch_once() == 10
        queue = app.get_job(ids[0]).queue_name
        assert await queuer.lanes.contents([queue]) == {str(job_id) for job_id in ids}
    finally:
        client.close()
        await queuer.close()
        app.close()


@pytest.mark.fault
async def test_a_replica_in_the_list_is_skipped(tmp_path: Path) -> None:
    """A replica answers PING but refuses writes: the rule passes over it."""
    primary = RedisServer(tmp_path)
    primary.start()
    replica = RedisServer(tmp_path, "--replicaof", "127.0.0.1", str(primary.port))
    backup = RedisServer(tmp_path)
    try:
        replica.start()
        backup.start()
        lanes = Lanes.open(failover_settings(primary.url, replica.url, backup.url))
        try:
            await lanes.ping()
            primary.stop()
            await pop_until(lanes, 2)
        finally:
            await lanes.close()
    finally:
        for server in (primary, replica, backup):
            server.stop()


@pytest.mark.fault
async def test_health_and_readiness_name_the_redis_in_use(
    settings: Settings, two_redis: tuple[RedisServer, RedisServer]
) -> None:
    primary, backup = two_redis
    values = {
        "database.url": settings.database.url,
        "database.schema": settings.database.schema_name,
        "redis.key_prefix": settings.redis.key_prefix,
    }
    configured = failover_settings(primary.url, backup.url, **values)
    lanes = Lanes.open(configured)
    try:
        primary.stop()
        async with Admin(configured) as one_shot:  # like `conveyor admin health`
            part = (await one_shot.health()).redis
        assert (part.url, part.failover_active, part.status) == (backup.url, True, "warning")
        problem, redis = await survey_redis(configured)
        assert problem is None, "ready: a configured Redis answers"
        assert redis == {"url": backup.url, "index": 1, "failover_active": True}
        await pop_until(lanes, 1)
        async with Admin(configured, lanes=lanes) as admin:
            part = (await admin.health()).redis
        assert (part.url, part.failover_active, part.status) == (backup.url, True, "warning")
        assert "failover active" in part.message
        backup.stop()
        problem, _ = await survey_redis(configured)
        assert problem is not None and "none of 2 answers" in problem
    finally:
        await lanes.close()


needs_sentinel = pytest.mark.skipif(
    find_command("redis-sentinel") is None, reason="needs redis-sentinel"
)


@pytest.mark.fault
@needs_sentinel
async def test_lanes_follow_a_sentinel_promotion(tmp_path: Path) -> None:
    with SentinelSet(tmp_path) as redis_ha:
        settings = load_settings(
            env={},
            overrides={
                "redis.url": redis_ha.primary.url,
                "redis.sentinel": {"service": redis_ha.service, "nodes": redis_ha.nodes},
                "redis.socket_timeout": 1,
            },
        )
        lanes = Lanes.open(settings)
        try:
            await lanes.ping()
            first = lanes.endpoint.url
            assert str(redis_ha.primary.port) in first
            redis_ha.kill_primary()
            new_port = redis_ha.wait_for_failover()

            async def moved() -> bool:
                with contextlib.suppress(RedisUnavailable):
                    await lanes.pop(["nothing"], 1, 0.05)
                return f":{new_port} " in lanes.endpoint.url

            await wait_until(moved, timeout=30, message="the lanes on the promoted replica")
            assert lanes.generation == 1
        finally:
            await lanes.close()


# -- real processes --------------------------------------------------------------------------


def finished(db: psycopg.Connection[Any]) -> int:
    row = db.execute(b"SELECT count(*) FROM jobs WHERE status IN ('completed', 'dead')").fetchone()
    return int(row[0]) if row else 0


async def settle_and_check(db: psycopg.Connection[Any], ids: list[Any]) -> dict[str, int]:
    """The queue check, plus: terminal rows do not change afterwards."""
    counts = queue_check(db, ids)
    before = snapshot(db)
    await asyncio.sleep(1.0)
    assert snapshot(db) == before, "a terminal row changed after the fact"
    return counts


def setup(settings_factory: Any, tmp_path: Path, **values: Any) -> tuple[Conveyor, Processes]:
    settings: Settings = settings_factory(**values)
    migrate(settings.database.url, settings.database.schema_name)
    create_recording_tables(settings)
    app = Conveyor(settings)
    app.tasks.update(recording.app.tasks)
    logs = tmp_path / "logs"
    logs.mkdir()
    return app, Processes(settings, logs)


def count(text: str, logs: str) -> int:
    return logs.count(text)


@pytest.mark.fault
async def test_processes_fail_over_to_the_backup_and_come_back(
    settings_factory: Any,
    two_redis: tuple[RedisServer, RedisServer],
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    """SIGKILL the primary mid-run: every job completes on the backup. Restart the primary
    on its port: the queuer and both worker processes move back, and new jobs complete."""
    primary, backup = two_redis
    app, procs = setup(settings_factory, tmp_path, **{"redis.url": primary.url})
    env = {
        "BACKUP_REDIS_URL": backup.url,
        "REDIS_FAILOVER_AFTER": "1s",
        "REDIS_FAILBACK_AFTER": "3s",
    }
    try:
        ids = app.enqueue_many("job", [{"sleep": 0.02} for _ in range(2000)])
        procs.queuer(**env)
        procs.worker(processes=2, concurrency=8, **env)
        await wait_until(lambda: finished(db) >= 300, timeout=60, message="progress")
        primary.stop()
        await wait_until(lambda: finished(db) == 2000, timeout=180, message="every job")
        logs = procs.logs()
        assert count("Redis failover to a backup", logs) == 3, "queuer and two workers moved"
        assert "Redis in use is now" in logs, "the queuer rebuilt the backup from PostgreSQL"
        assert await settle_and_check(db, ids) == {"completed": 2000}

        primary.start()
        await wait_until(
            lambda: count("Redis back to the primary", procs.logs()) == 3,
            timeout=60,
            message="every process back on the primary",
        )
        more = app.enqueue_many("job", [{"sleep": 0.001} for _ in range(300)])
        await wait_until(lambda: finished(db) == 2300, timeout=120, message="the new jobs")
        client = primary.client()
        try:
            assert client.exists(app.settings.redis.key_prefix + "conveyor:epoch")
        finally:
            client.close()
        assert await settle_and_check(db, ids + more) == {"completed": 2300}
    finally:
        procs.stop_all()
        app.close()


@pytest.mark.fault
async def test_a_split_choice_loses_and_duplicates_nothing(
    settings_factory: Any,
    two_redis: tuple[RedisServer, RedisServer],
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    """The worst split: one queuer and worker on each Redis for the whole run (as if each
    saw a different one answer). Each leader's reconciler re-queues what the other Redis
    holds; claims are guarded, so every job still runs at most once per attempt."""
    primary, backup = two_redis
    app, procs = setup(settings_factory, tmp_path, **{"redis.url": primary.url})
    try:
        ids = app.enqueue_many("job", [{"sleep": 0.002} for _ in range(1000)])
        procs.queuer()
        procs.worker(processes=1, concurrency=8)
        procs.queuer(REDIS_URL=backup.url)
        procs.worker(processes=1, concurrency=8, REDIS_URL=backup.url)
        await wait_until(lambda: finished(db) == 1000, timeout=180, message="every job")
        assert await settle_and_check(db, ids) == {"completed": 1000}
        attempts = db.execute(b"SELECT max(attempt) FROM jobs").fetchone()
        assert attempts == (1,), "no job needed a second attempt"
        for server in (primary, backup):
            client = server.client()
            try:
                assert client.exists(app.settings.redis.key_prefix + "conveyor:epoch")
            finally:
                client.close()
    finally:
        procs.stop_all()
        app.close()


@pytest.mark.fault
@needs_sentinel
async def test_processes_follow_sentinel_when_the_primary_is_killed(
    settings_factory: Any, tmp_path: Path, db: psycopg.Connection[Any]
) -> None:
    with SentinelSet(tmp_path / "ha") as redis_ha:
        app, procs = setup(settings_factory, tmp_path, **{"redis.url": redis_ha.primary.url})
        env = {
            "REDIS_SENTINEL_NODES": ",".join(redis_ha.nodes),
            "REDIS_SENTINEL_SERVICE": redis_ha.service,
        }
        try:
            ids = app.enqueue_many("job", [{"sleep": 0.02} for _ in range(2000)])
            procs.queuer(**env)
            procs.worker(processes=2, concurrency=8, **env)
            await wait_until(lambda: finished(db) >= 300, timeout=60, message="progress")
            redis_ha.kill_primary()
            redis_ha.wait_for_failover()
            await wait_until(lambda: finished(db) == 2000, timeout=180, message="every job")
            assert "Sentinel named a new primary" in procs.logs()
            assert await settle_and_check(db, ids) == {"completed": 2000}
        finally:
            procs.stop_all()
            app.close()
