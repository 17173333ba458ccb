"""Redis key layout and the few operations the queue needs from Redis.

Redis only holds a bounded buffer of job ids per queue (never payloads: PostgreSQL has
them, and claim returns them), so losing Redis loses no information.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Concatenate, Literal, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis

from conveyor.config import Settings
from conveyor.deadlines import longest_block
from conveyor.errors import RedisUnavailable
from conveyor.redis_endpoints import DRIVER_ERRORS, ActiveEndpoint, Endpoints, _Primary
from conveyor.vocabulary import (
    HIGH_PRIORITY_MAX,
    LANES,
    LOW,
    NORMAL,
    NORMAL_PRIORITY_MAX,
    LaneName,
    lane_for_priority,
)

__all__ = [
    "HIGH_PRIORITY_MAX",
    "LANES",
    "NORMAL_PRIORITY_MAX",
    "ActiveEndpoint",
    "Endpoints",
    "LaneName",
    "lane_for_priority",
]


_DRIVER_ERRORS = DRIVER_ERRORS


P = ParamSpec("P")
R = TypeVar("R")


def redis_errors(
    method: Callable[Concatenate[Lanes, P], Awaitable[R]],
) -> Callable[Concatenate[Lanes, P], Awaitable[R]]:
    """Raise RedisUnavailable for an outage, so no caller above lanes sees a redis class,
    and tell the endpoint selector how the Redis in use is doing."""

    @functools.wraps(method)
    async def translated(lanes: Lanes, /, *args: P.args, **kwargs: P.kwargs) -> R:
        endpoints = lanes.endpoints
        generation = endpoints.generation
        try:
            result = await method(lanes, *args, **kwargs)
        except _DRIVER_ERRORS as error:
            endpoints.failed(generation)
            where = endpoints.active.url
            raise RedisUnavailable(f"Redis is unavailable ({where}): {error}") from error
        endpoints.succeeded(generation)
        return result

    return translated


def redis_client(settings: Settings, timeout: float | None = None) -> aioredis.Redis:
    """A client on the primary Redis that also carries the failover candidates: Lanes built
    on it switch Redis as Lanes.open's do, and closing it closes them all."""
    return Endpoints.from_settings(settings, timeout).primary_client()


def _load_lua(name: str) -> str:
    return resources.files("conveyor").joinpath("lua").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Keys:
    """Every Redis key Conveyor uses, derived from one configurable prefix."""

    prefix: str = ""

    def lane(self, queue: str, lane: LaneName) -> str:
        base = f"{self.prefix}queue:{queue}"
        return base if lane == NORMAL else f"{base}:{lane}"

    def lanes(self, queue: str) -> list[str]:
        return [self.lane(queue, lane) for lane in LANES]

    @property
    def epoch(self) -> str:
        return f"{self.prefix}conveyor:epoch"

    @property
    def paused(self) -> str:
        return f"{self.prefix}conveyor:paused"

    @property
    def roots(self) -> tuple[str, str]:
        """What every key above starts with."""
        return f"{self.prefix}queue:", f"{self.prefix}conveyor:"


def lane_order(queues: Sequence[str], keys: Keys, order: Literal["queue", "priority"]) -> list[str]:
    """The BLMPOP key list: queue by queue (high, normal, low each), or all highs first."""
    if order == "queue":
        return [key for queue in queues for key in keys.lanes(queue)]
    return [keys.lane(queue, lane) for lane in LANES for queue in queues]


@dataclass(frozen=True)
class RedisMemory:
    used_memory: int
    maxmemory: int  # 0: no limit
    maxmemory_policy: str | None


class EpochLost(Exception):
    """Redis no longer holds the epoch we pushed under: its contents were lost."""


class Lanes:
    """Push, pop and inspect lanes. Every method is one round trip."""

    def __init__(
        self, client: aioredis.Redis | Endpoints, keys: Keys, *, owns_client: bool = False
    ) -> None:
        if isinstance(client, Endpoints):
            self.endpoints = client
        elif isinstance(client, _Primary):
            self.endpoints = client.endpoints
        else:
            self.endpoints = Endpoints.single(client)
        self.keys = keys
        self._owns_client = owns_client
        self._push = self.endpoints.client.register_script(_load_lua("push.lua"))
        self._promote = self.endpoints.client.register_script(_load_lua("promote.lua"))

    @classmethod
    def open(cls, settings: Settings, *, timeout: float | None = None) -> Lanes:
        """Lanes with their own clients (they connect on first use, so this never fails);
        `timeout` replaces redis.socket_timeout (a probe must answer quickly)."""
        endpoints = Endpoints.from_settings(settings, timeout)
        return cls(endpoints, Keys(settings.redis.key_prefix), owns_client=True)

    @property
    def client(self) -> aioredis.Redis:
        """The client of the Redis in use now (it changes on a failover)."""
        return self.endpoints.client

    @property
    def endpoint(self) -> ActiveEndpoint:
        """Which Redis is in use; its `generation` grows at every switch."""
        return self.endpoints.active

    @property
    def generation(self) -> int:
        return self.endpoints.generation

    async def close(self) -> None:
        if self._owns_client:
            await self.endpoints.close()

    async def survey(self) -> list[tuple[str, str | None]]:
        """Every configured Redis, pinged now: (url without password, None or the error)."""
        errors = await self.endpoints.survey()
        return [
            (c.label, error) for c, error in zip(self.endpoints.candidates, errors, strict=True)
        ]

    @redis_errors
    async def ping(self) -> None:
        await self.client.ping()

    @redis_errors
    async def current_epoch(self) -> str | None:
        value = await self.client.get(self.keys.epoch)
        return None if value is None else _text(value)

    @redis_errors
    async def claim_epoch(self) -> tuple[str, bool]:
        """Return the epoch in force, creating one if Redis has none (True if we did)."""
        fresh = uuid.uuid4().hex
        created = await self.client.set(self.keys.epoch, fresh, nx=True)
        if created:
            return fresh, True
        current = await self.current_epoch()
        if current is None:  # wiped again between the two calls; try once more later
            raise EpochLost("epoch vanished while being read")
        return current, False

    @redis_errors
    async def push(self, epoch: str, groups: dict[str, list[str]]) -> int:
        """Push ids to lanes atomically under `epoch`; raise EpochLost if Redis was wiped."""
        lane_keys = [key for key, ids in groups.items() if ids]
        if not lane_keys:
            return 0
        args: list[str] = [epoch]
        args.extend(str(len(groups[key])) for key in lane_keys)
        for key in lane_keys:
            args.extend(groups[key])
        # The script is loaded into whichever Redis is in use (evalsha falls back to load).
        pushed = int(
            await self._push(keys=[self.keys.epoch, *lane_keys], args=args, client=self.client)
        )
        if pushed < 0:
            raise EpochLost("epoch changed: Redis lost its contents")
        return pushed

    async def pop(self, lane_keys: Sequence[str], count: int, block: float) -> list[str]:
        """Block until one lane has ids, then take up to `count` from the first non-empty.
        While the Redis in use fails, wait up to `block` for a switch to another and pop
        there: a worker would otherwise sleep out its backoff after the switch."""
        generation = self.generation
        try:
            return await self._pop(lane_keys, count, block)
        except RedisUnavailable:
            if not await self.endpoints.switched_since(generation, block):
                raise
        return await self._pop(lane_keys, count, block)

    @redis_errors
    async def promote(self, queue: str, ids: Sequence[str]) -> int:
        """Move these ids, where still in the queue's low lane, to the pop end of its normal
        lane (the low lane's aging); return how many moved."""
        if not ids:
            return 0
        keys = [self.keys.lane(queue, LOW), self.keys.lane(queue, NORMAL)]
        return int(await self._promote(keys=keys, args=list(ids), client=self.client))

    def on_switch(self, listener: Callable[[], None]) -> None:
        """Call `listener` (no arguments, from the event loop) after every switch of Redis."""
        self.endpoints.listeners.append(listener)

    @redis_errors
    async def _pop(self, lane_keys: Sequence[str], count: int, block: float) -> list[str]:
        if not lane_keys or count <= 0:
            return []
        timeout = self.endpoints.socket_timeout
        if timeout is not None:
            # redis-py reads a blocking reply under socket_timeout like any other: a block
            # as long would time out on a healthy, idle Redis and look like an outage (and,
            # with backups, start a failover). An early empty pop costs nothing.
            block = longest_block(timeout, block)
        result = await self.client.blmpop(
            block, len(lane_keys), *lane_keys, direction="RIGHT", count=count
        )
        if not result:
            return []
        return [_text(item) for item in cast(list[bytes], result[1])]

    @redis_errors
    async def contents(self, queues: Iterable[str]) -> set[str]:
        """Every id sitting in the lanes of `queues` (bounded by the buffer size)."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            for key in self.keys.lanes(queue):
                pipe.lrange(key, 0, -1)
        found: set[str] = set()
        for items in await pipe.execute():
            found.update(_text(item) for item in cast(list[bytes], items))
        return found

    @redis_errors
    async def lengths(self, queues: Iterable[str]) -> dict[tuple[str, LaneName], int]:
        names = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in names:
            for lane in LANES:
                pipe.llen(self.keys.lane(queue, lane))
        values = iter(await pipe.execute())
        return {(queue, lane): int(next(values)) for queue in names for lane in LANES}

    @redis_errors
    async def peek(self, queue: str, lanes: Sequence[LaneName], count: int) -> list[str]:
        """Up to `count` ids from the pop end of each of `lanes`, in the order workers
        would pop them (the lanes in the order given)."""
        pipe = self.client.pipeline(transaction=False)
        for lane in lanes:
            pipe.lrange(self.keys.lane(queue, lane), -count, -1)
        ids: list[str] = []
        for items in await pipe.execute():
            # Pushed on the left, popped on the right: the last item leaves first.
            ids.extend(_text(item) for item in reversed(cast(list[bytes], items)))
        return ids

    @redis_errors
    async def ahead_of(self, queue: str, lane: LaneName, job_id: str) -> int | None:
        """How many ids workers pop before `job_id` (its own lane and the more urgent
        ones); None when the id is not in its lane."""
        key = self.keys.lane(queue, lane)
        pipe = self.client.pipeline(transaction=False)
        pipe.lpos(key, job_id)
        pipe.llen(key)
        for urgent in LANES[: LANES.index(lane)]:
            pipe.llen(self.keys.lane(queue, urgent))
        position, length, *others = await pipe.execute()
        if position is None:
            return None
        # Everything to its right in its own lane goes first.
        return int(length) - 1 - int(position) + sum(int(count) for count in others)

    @redis_errors
    async def memory(self) -> RedisMemory:
        """Memory use, limit and eviction policy (INFO memory)."""
        info = await self.client.info("memory")
        return RedisMemory(
            used_memory=int(info.get("used_memory", 0)),
            maxmemory=int(info.get("maxmemory", 0)),
            maxmemory_policy=str(info.get("maxmemory_policy", "")) or None,
        )

    @redis_errors
    async def eviction_policy(self) -> str | None:
        """Redis's maxmemory-policy, or None where CONFIG is not allowed (managed Redis)."""
        try:
            found = await self.client.config_get("maxmemory-policy")
        except aioredis.ResponseError:
            return None
        for key, value in cast(dict[bytes | str, bytes | str], found).items():
            if _text(key) == "maxmemory-policy":
                return _text(value)
        return None

    @redis_errors
    async def paused(self) -> set[str]:
        members = await self.client.smembers(self.keys.paused)
        return {_text(item) for item in members}

    @redis_errors
    async def set_paused(self, queues: Iterable[str]) -> None:
        """Replace the paused set with `queues` (used when rebuilding after a wipe)."""
        names = list(queues)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.paused)
        if names:
            pipe.sadd(self.keys.paused, *names)
        await pipe.execute()

    @redis_errors
    async def pause(self, queue: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self.keys.paused, queue)
        pipe.delete(*self.keys.lanes(queue))
        await pipe.execute()

    @redis_errors
    async def resume(self, queue: str) -> None:
        await self.client.srem(self.keys.paused, queue)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
