"""Which Redis a process talks to: `redis.url`, a backup from `redis.failover_urls` while
it is down, or the primary that Redis Sentinel names.

Processes never talk to each other about this. Each applies the same rule to what it can
reach: after the Redis in use has failed for `redis.failover_after`, the first candidate in
the configured order that answers PING is used; a process on a backup returns to
`redis.url` once it has answered every probe (one a second) for `redis.failback_after`.
Processes that briefly disagree lose nothing: PostgreSQL owns every job and a claim is one
guarded UPDATE, so an id in the "wrong" Redis is either re-dispatched or dropped (see
docs/operations.md, "Redis failover").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.exceptions
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from conveyor import metrics
from conveyor.config import Settings
from conveyor.deadlines import redis_options
from conveyor.redis_choice import PROBE_TIMEOUT, Choice, redact

log = logging.getLogger("conveyor.redis")

# What "Redis is unreachable" looks like; Lanes turns them into RedisUnavailable. A
# read-only replica (READONLY) is as useless to us as a dead server: it is an outage too.
DRIVER_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    OSError,
)


def _retry(retries: int) -> Retry:
    # redis-py's default retries a failed command ten times, timeouts included: a dead or
    # silent Redis would hold every caller for minutes. Immediate retries on a broken
    # connection only (an idle one the server dropped; `liveness.redis_retries`, 1 by
    # default) and none on a timeout keep a call within socket_timeout.
    return Retry(NoBackoff(), retries, supported_errors=(redis.exceptions.ConnectionError,))


def url_client(
    url: str, timeout: float, pool_size: int, cls: type[aioredis.Redis], settings: Settings
) -> Any:
    return cls.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        max_connections=pool_size,
        **redis_options(settings),
        retry=_retry(settings.liveness.redis_retries),
    )


class _Primary(aioredis.Redis):
    """The client `redis_client()` hands out: it carries the endpoint selector, so that
    `Lanes(client, keys)` fails over too, and closing it closes every endpoint."""

    endpoints: Endpoints

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.endpoints.close()


@dataclass
class _Candidate:
    label: str
    make: Callable[[], aioredis.Redis]
    make_probe: Callable[[], aioredis.Redis] | None = None
    client: aioredis.Redis | None = None
    probe: aioredis.Redis | None = None


@dataclass(frozen=True)
class ActiveEndpoint:
    index: int  # 0: redis.url (or Sentinel's primary); 1...: redis.failover_urls in order
    url: str  # without password
    on_backup: bool
    generation: int  # grows by one at every switch


@dataclass
class Endpoints:
    """One selector per Lanes: the candidates, their clients (made on first use) and the
    choice between them. Switching bumps `generation`, which the queuer watches."""

    candidates: list[_Candidate]
    failover_after: float = 5.0
    failback_after: float = 30.0
    sentinel: Any = None  # redis.asyncio.sentinel.Sentinel, closed with us
    owns_clients: bool = True
    socket_timeout: float | None = None  # None: the client's own (none set)
    generation: int = 0
    choice: Choice = field(init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _master: tuple[str, int] | None = field(default=None, init=False)
    _closed: bool = field(default=False, init=False)
    _switch: asyncio.Event | None = field(default=None, init=False)
    listeners: list[Callable[[], None]] = field(default_factory=list, init=False)

    _published: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.choice = Choice(len(self.candidates), self.failover_after, self.failback_after)

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float | None = None) -> Endpoints:
        conf = settings.redis
        seconds = conf.socket_timeout if timeout is None else timeout
        probe_seconds = min(seconds, PROBE_TIMEOUT)
        if conf.sentinel is not None:
            return cls._sentinel(settings, seconds)
        candidates = []
        for index, url in enumerate([conf.url, *conf.failover_urls]):
            kind = _Primary if index == 0 else aioredis.Redis
            candidates.append(
                _Candidate(
                    redact(url),
                    # Bound now: a closure over the loop variable would see the last URL.
                    make=lambda url=url, kind=kind: url_client(  # type: ignore[misc]
                        url, seconds, conf.pool_size, kind, settings
                    ),
                    make_probe=lambda url=url: url_client(  # type: ignore[misc]
                        url, probe_seconds, 2, aioredis.Redis, settings
                    ),
                )
            )
        return cls(candidates, conf.failover_after, conf.failback_after, socket_timeout=seconds)

    @classmethod
    def _sentinel(cls, settings: Settings, seconds: float) -> Endpoints:
        conf = settings.redis
        assert conf.sentinel is not None  # noqa: S101
        nodes = [
            (host, int(port)) for host, _, port in (n.rpartition(":") for n in conf.sentinel.nodes)
        ]
        # redis.url still carries the password, database and TLS of the data nodes.
        wanted = ("db", "username", "password")
        given = {key: value for key, value in parse_url(conf.url).items() if key in wanted}
        if urlsplit(conf.url).scheme == "rediss":
            given["ssl"] = True
        timeouts = {"socket_timeout": seconds, "socket_connect_timeout": seconds}
        sentinel = aiosentinel.Sentinel(  # type: ignore[no-untyped-call]
            nodes, sentinel_kwargs=dict(timeouts), **timeouts, **given
        )
        service = conf.sentinel.service

        def make() -> aioredis.Redis:
            client: aioredis.Redis = sentinel.master_for(
                service,
                redis_class=_Primary,
                max_connections=conf.pool_size,
                **redis_options(settings),
                retry=_retry(settings.liveness.redis_retries),
            )
            return client

        label = f"sentinel://{','.join(conf.sentinel.nodes)}/{service}"
        endpoints = cls([_Candidate(label, make)], sentinel=sentinel, socket_timeout=seconds)
        return endpoints

    @classmethod
    def single(cls, client: aioredis.Redis) -> Endpoints:
        """A client made elsewhere (tests, tools): used as it is, never switched or closed."""
        kwargs = client.connection_pool.connection_kwargs
        label = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        timeout = kwargs.get("socket_timeout")
        return cls(
            [_Candidate(label, lambda: client, client=client)],
            owns_clients=False,
            socket_timeout=float(timeout) if timeout else None,
        )

    # -- what callers use ------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        return self._client(self.choice.active)

    @property
    def active(self) -> ActiveEndpoint:
        index = self.choice.active
        return ActiveEndpoint(index, self._label(index), index > 0, self.generation)

    def failed(self, generation: int) -> None:
        """A call made under `generation` failed as Redis does when it is unreachable."""
        if generation != self.generation or self._closed:
            return  # it failed on an endpoint we have left already
        self._publish_once()
        self.choice.failure(time.monotonic())
        self._watch()

    def succeeded(self, generation: int) -> None:
        if generation != self.generation:
            return
        self._publish_once()
        self.choice.success()
        if self.sentinel is not None:
            self._follow_sentinel()
        elif not self.choice.idle:
            self._watch()  # on a backup: keep probing redis.url

    async def switched_since(self, generation: int, seconds: float) -> bool:
        """Wait up to `seconds` for a switch away from `generation`; True if one happened.
        With one candidate (plain URL, Sentinel) no switch can come while calls fail."""
        if len(self.candidates) < 2 or self._closed:
            return self.generation != generation
        if self.generation == generation:
            if self._switch is None:
                self._switch = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._switch.wait()
        return self.generation != generation

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.owns_clients:
            return
        for candidate in self.candidates:
            for client in (candidate.client, candidate.probe):
                if isinstance(client, _Primary):
                    await aioredis.Redis.aclose(client)
                elif client is not None:
                    await client.aclose()
            candidate.client = candidate.probe = None
        if self.sentinel is not None:
            for node in self.sentinel.sentinels:
                await node.aclose()

    def primary_client(self) -> _Primary:
        return cast(_Primary, self._client(0))

    async def survey(self) -> list[str | None]:
        """Ping every candidate now: None where it answered, else why not."""
        return list(await asyncio.gather(*(self._ping(i) for i in range(len(self.candidates)))))

    # -- switching -------------------------------------------------------------------------

    def _client(self, index: int) -> aioredis.Redis:
        candidate = self.candidates[index]
        if candidate.client is None:
            candidate.client = candidate.make()
            if isinstance(candidate.client, _Primary):
                candidate.client.endpoints = self
        return candidate.client

    def _label(self, index: int) -> str:
        if self.sentinel is not None and self._master is not None:
            host, port = self._master
            return f"redis://{host}:{port} ({self.candidates[0].label})"
        return self.candidates[index].label

    def _watch(self) -> None:
        """Start the background watcher unless it runs: it probes without holding callers."""
        if len(self.candidates) < 2 or self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watcher())

    async def _watcher(self) -> None:
        while not self._closed:
            now = time.monotonic()
            if self.choice.probe_due(now):
                previous = self.choice.active
                answered = [error is None for error in await self.survey()]
                if self.choice.probed(answered, time.monotonic()) is not None:
                    await self._switched(
                        previous, f"{self._label(previous)} failed for {self.failover_after:g} s"
                    )
            elif self.choice.primary_probe_due(now):
                previous = self.choice.active
                error = await self._ping(0)
                if self.choice.primary_probed(error is None, time.monotonic()):
                    await self._switched(
                        previous, f"{self._label(0)} answered for {self.failback_after:g} s"
                    )
            if self.choice.idle:
                return
            await asyncio.sleep(self.choice.seconds_to_wait(time.monotonic()))

    async def _switched(self, previous: int, reason: str) -> None:
        self.generation += 1
        now = self.choice.active
        kind = "back to the primary" if now == 0 else "failover to a backup"
        log.warning(
            "Redis %s: now using %s instead of %s (%s)",
            kind,
            self._label(now),
            self._label(previous),
            reason,
        )
        metrics.REDIS_FAILOVERS.labels(self._label(now)).inc()
        self._announce()
        old = self.candidates[previous].client
        if old is not None:
            # Idle connections to the one we left are dead or soon stale; callers still
            # blocked on it finish (or fail) on their own.
            with contextlib.suppress(*DRIVER_ERRORS):
                await old.connection_pool.disconnect(inuse_connections=False)

    async def _ping(self, index: int) -> str | None:
        candidate = self.candidates[index]
        if candidate.make_probe is None:
            client = self._client(index)
        else:
            if candidate.probe is None:
                candidate.probe = candidate.make_probe()
            client = candidate.probe
        try:
            async with asyncio.timeout(PROBE_TIMEOUT + 1):
                await client.ping()
                role = await self._role(client)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as error:
            return str(error) or type(error).__name__
        # A replica answers PING but refuses every write: it must not win the choice.
        return None if role in (None, "master") else f"it is a {role}, not a primary"

    @staticmethod
    async def _role(client: aioredis.Redis) -> str | None:
        try:
            reply = await client.role()
        except redis.exceptions.ResponseError:
            return None  # ROLE disabled (some managed Redis): PING has to do
        first = reply[0] if isinstance(reply, list | tuple) and reply else reply
        return first.decode() if isinstance(first, bytes) else str(first)

    def _follow_sentinel(self) -> None:
        """Sentinel moves the primary by itself (redis-py reconnects to whichever one the
        sentinels name); notice it, so the queuer rebuilds what the old one held."""
        client = self.candidates[0].client
        master = getattr(client.connection_pool, "master_address", None) if client else None
        if master is None or master == self._master:
            return
        old, self._master = self._master, (str(master[0]), int(master[1]))
        if old is None:
            self._publish()
            return
        self.generation += 1
        log.warning(
            "Redis Sentinel named a new primary: now using %s instead of redis://%s:%d",
            self._label(0),
            *old,
        )
        metrics.REDIS_FAILOVERS.labels(self._label(0)).inc()
        self._announce()

    def _announce(self) -> None:
        """Tell the gauges, callers waiting in switched_since() and the listeners (the
        queuer wakes up to rebuild at once instead of sleeping out its backoff)."""
        self._publish()
        if self._switch is not None:
            self._switch.set()
            self._switch = None
        for listener in self.listeners:
            listener()

    def _publish_once(self) -> None:
        # Not at construction: a readiness probe's short-lived lanes would overwrite the
        # gauge of the lanes this process really works with.
        if not self._published:
            self._published = True
            self._publish()

    def _publish(self) -> None:
        for index in range(len(self.candidates)):
            value = 1 if index == self.choice.active else 0
            # The configured label, not Sentinel's current address: one series per endpoint.
            metrics.REDIS_ACTIVE.labels(str(index), self.candidates[index].label).set(value)
