"""Deadlines on a silent connection, one component at a time: the store, the LISTEN
session and the lanes each give a frozen connection up within their configured time,
discard it, and work again on a new one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from conveyor.config import Settings
from conveyor.errors import RedisUnavailable, StatementTimeout
from conveyor.lanes import Lanes
from conveyor.store import Store
from conveyor.store.listen import Listener
from tests.conftest import wait_until
from tests.servers import BlackholeProxy

pytestmark = pytest.mark.fault


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}".lstrip("@")))


@pytest.fixture
def pg_proxy(settings: Settings) -> Iterator[BlackholeProxy]:
    parts = urlsplit(settings.database.url)
    with BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


async def test_a_statement_on_a_silent_connection_times_out_and_is_discarded(
    settings: Settings, settings_factory: Callable[..., Settings], pg_proxy: BlackholeProxy
) -> None:
    proxied = settings_factory(
        **{
            "database.url": through(settings.database.url, pg_proxy.port),
            "database.pool_size": 1,  # the silent connection is the only one
            "database.connect_timeout": 2.0,
            "liveness.database_deadline": 1.0,
        }
    )
    store = await Store.open(proxied, "test")
    try:
        await store.ping()
        pg_proxy.freeze()
        # The idle pooled connection is silent now: its check at checkout gives it up
        # (connect_timeout / 2) and the pool opens a new one through the proxy.
        started = time.monotonic()
        await store.ping()
        assert time.monotonic() - started < 10, "bounded by the check, not by TCP"
        # A statement in flight when the connection goes silent, inside a transaction
        # (whose ROLLBACK must not hang either).
        with pytest.raises(StatementTimeout, match="did not answer a statement within 1 s"):
            async with store.transaction() as tx:
                await tx.ping()
                pg_proxy.freeze()
                started = time.monotonic()
                await tx.ping()
        assert time.monotonic() - started < 10, "bounded by the deadline, not by TCP"
        await store.ping()  # again on a new connection: the silent one was not reused
    finally:
        await store.close()


async def test_a_silent_listen_session_is_noticed(
    settings: Settings, settings_factory: Callable[..., Settings], pg_proxy: BlackholeProxy
) -> None:
    proxied = settings_factory(
        **{
            "database.url": through(settings.database.url, pg_proxy.port),
            "liveness.database_deadline": 1.0,
            "liveness.listen_check_interval": 0.5,
        }
    )
    listener = Listener(proxied, lambda: None, lead=True)
    try:
        await listener.ensure_open()
        await wait_until(lambda: listener.is_leader, message="the leader lock")
        pg_proxy.freeze()
        await wait_until(lambda: not listener.alive, timeout=15, message="the silence noticed")
        # PostgreSQL ends the silent session (idle_session_timeout), releasing the lock.
        await listener.ensure_open()
        await wait_until(
            lambda: listener.is_leader, timeout=30, message="the lock back on a new session"
        )
    finally:
        await listener.close()


async def test_redis_commands_on_silent_connections_are_bounded(
    settings: Settings, settings_factory: Callable[..., Settings]
) -> None:
    parts = urlsplit(settings.redis.url)
    with BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        proxied = settings_factory(
            **{
                "redis.url": through(settings.redis.url, proxy.port),
                "redis.socket_timeout": 1.0,
                "liveness.redis_retries": 0,
            }
        )
        lanes = Lanes.open(proxied)
        try:
            await lanes.ping()
            # A pop's wait stays under the socket timeout: no timeout error while idle.
            assert await lanes.pop(lanes.keys.lanes("none"), 1, block=5.0) == []
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(RedisUnavailable):
                await lanes.ping()
            assert time.monotonic() - started < 10
            await asyncio.wait_for(lanes.ping(), 10)  # a new connection
        finally:
            await lanes.close()
