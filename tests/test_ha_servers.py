"""Smoke tests of the servers in tests/servers.py, which also document behaviour Conveyor's
high-availability work must live with: PgBouncer in transaction mode, Sentinel failover and a
peer that goes silent without closing its connection."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import ADMIN_URL, REDIS_URL
from tests.servers import BlackholeProxy, PgBouncer, SentinelSet, find_command

pytestmark = pytest.mark.fault


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """The shared server's address, from the URL the other tests use."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


SHARED_PG = host_port(ADMIN_URL, 5432)
SHARED_REDIS = host_port(REDIS_URL, 6379)


def needs(*commands: str) -> pytest.MarkDecorator:
    missing = [c for c in commands if find_command(c) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def unique(name: str) -> str:
    return f"ha-servers-{name}-{os.getpid()}-{time.monotonic_ns()}"


class Call(threading.Thread):
    """Runs `function` in a thread and keeps its result or error (never an unhandled one)."""

    def __init__(self, function: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.function = function
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.function()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error


@needs("pgbouncer")
def test_pgbouncer_transaction_mode_breaks_prepared_statements(tmp_path: Path) -> None:
    """Two clients share one server connection in transaction mode. psycopg prepares a
    statement after prepare_threshold (5) executions under a name unique per client
    connection (_pg3_0), so the second client's prepare collides with the first's on the
    shared server connection. prepare_threshold=None (never prepare) works: Conveyor must use
    it behind a transaction-mode PgBouncer."""
    host, port = SHARED_PG
    with PgBouncer(host, port, tmp_path, default_pool_size=1) as bouncer:
        query = b"SELECT %s::int"
        first = psycopg.connect(bouncer.url(), autocommit=True, connect_timeout=5)
        second = psycopg.connect(bouncer.url(), autocommit=True, connect_timeout=5)
        with first, second:
            for i in range(6):
                assert first.execute(query, (i,)).fetchone() == (i,)
            with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
                for i in range(6):
                    second.execute(query, (i,))

        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 5}
        first = psycopg.connect(bouncer.url(), prepare_threshold=None, **kwargs)
        second = psycopg.connect(bouncer.url(), prepare_threshold=None, **kwargs)
        with first, second:
            for i in range(8):
                assert first.execute(query, (i,)).fetchone() == (i,)
                assert second.execute(query, (i,)).fetchone() == (i,)


@needs("pgbouncer")
def test_pgbouncer_drops_the_options_startup_parameter(tmp_path: Path) -> None:
    """ignore_startup_parameters lets clients that send `options` in, but the server never
    gets it: Conveyor's `options=-c jit=off` does nothing behind PgBouncer 1.18."""
    host, port = SHARED_PG
    options = "-c statement_timeout=4321"
    with psycopg.connect(ADMIN_URL, options=options, connect_timeout=5) as direct:
        assert direct.execute(b"SHOW statement_timeout").fetchone() == ("4321ms",)
    with (
        PgBouncer(host, port, tmp_path) as bouncer,
        psycopg.connect(bouncer.url(), options=options, connect_timeout=5) as pooled,
    ):
        assert pooled.execute(b"SHOW statement_timeout").fetchone() != ("4321ms",)


@needs("redis-server", "redis-sentinel")
def test_sentinel_failover_keeps_a_replicated_key(tmp_path: Path) -> None:
    with SentinelSet(tmp_path) as redis_ha:
        assert len(redis_ha.nodes) == 3
        old = redis_ha.primary_port()
        assert old == redis_ha.primary.port
        master = redis_ha.master()
        master.set("ha-key", "kept")
        assert master.wait(1, 5000) == 1, "the replica has the key"
        master.close()

        assert redis_ha.kill_primary() == old
        new = redis_ha.wait_for_failover(timeout=30)
        assert new == redis_ha.replica.port
        assert redis_ha.primary_port() == new
        promoted = redis_ha.master()
        assert promoted.get("ha-key") == b"kept"
        promoted.close()


def test_blackhole_proxy_silences_open_redis_connections() -> None:
    """Only a socket timeout notices a silent peer. redis-py's default Retry (3 attempts)
    then reconnects, and the new connection passes; without retries the timeout surfaces."""
    key = unique("redis")
    host, port = SHARED_REDIS
    timeouts: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    with BlackholeProxy(host, port) as proxy:
        bare = redis.Redis(port=proxy.port, retry=Retry(NoBackoff(), 0), **timeouts)
        retrying = redis.Redis(port=proxy.port, **timeouts)
        try:
            assert bare.set(key, "through") and retrying.get(key) == b"through"
            proxy.freeze()
            with pytest.raises(redis.exceptions.TimeoutError):
                bare.get(key)
            assert retrying.get(key) == b"through", "retried on a new connection"
            with redis.Redis(port=proxy.port, **timeouts) as new:
                assert new.get(key) == b"through", "new connections pass"
        finally:
            bare.close()
            retrying.close()
            with redis.Redis.from_url(REDIS_URL, socket_timeout=5) as shared:
                shared.delete(key)


def test_blackhole_proxy_silences_open_postgres_connections() -> None:
    host, port = SHARED_PG
    with BlackholeProxy(host, port) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as old:
            assert old.execute(b"SELECT 1").fetchone() == (1,)
            proxy.freeze()
            call = Call(lambda: old.execute(b"SELECT 2").fetchone())
            call.start()
            call.join(1)
            assert call.is_alive(), "the statement hangs: no reply, no error"
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as new:
                assert new.execute(b"SELECT 3").fetchone() == (3,), "new connections pass"
            proxy.thaw()
            call.join(10)
            assert not call.is_alive() and call.error is None
            assert call.result == (2,), "the held bytes arrive after thaw()"
