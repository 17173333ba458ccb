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
from typing import Literal, ParamSpec, TypeVar, cast

import redis
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from conveyor.config import Settings
from conveyor.deadlines import longest_block, redis_options
from conveyor.errors import RedisUnavailable, ScratchRefused
from conveyor.vocabulary import (
    HIGH_PRIORITY_MAX,
    LANES,
    NORMAL,
    NORMAL_PRIORITY_MAX,
    LaneName,
    lane_for_priority,
)

__all__ = [
    "HIGH_PRIORITY_MAX",
    "LANES",
    "NORMAL_PRIORITY_MAX",
    "LaneName",
    "lane_for_priority",
]


# What "Redis is unreachable" looks like; Lanes turns them into RedisUnavailable.
_DRIVER_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

P = ParamSpec("P")
R = TypeVar("R")


def redis_errors(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Raise RedisUnavailable for an outage, so no caller above lanes sees a redis class."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except _DRIVER_ERRORS as error:
            raise RedisUnavailable(f"Redis is unavailable: {error}") from error

    return translated


def redis_client(settings: Settings, timeout: float | None = None) -> aioredis.Redis:
    seconds = settings.redis.socket_timeout if timeout is None else timeout
    return aioredis.Redis.from_url(
        settings.redis.url,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
        max_connections=settings.redis.pool_size,
        **redis_options(settings),
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), settings.liveness.redis_retries),
    )


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

    def __init__(self, client: aioredis.Redis, keys: Keys, *, owns_client: bool = False) -> None:
        self.client = client
        self.keys = keys
        self._owns_client = owns_client
        self._push = client.register_script(_load_lua("push.lua"))

    @classmethod
    def open(cls, settings: Settings, *, timeout: float | None = None) -> Lanes:
        """Lanes with their own client (it connects on first use, so this never fails);
        `timeout` replaces redis.socket_timeout (a probe must answer quickly)."""
        client = redis_client(settings, timeout)
        return cls(client, Keys(settings.redis.key_prefix), owns_client=True)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

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
        pushed = int(await self._push(keys=[self.keys.epoch, *lane_keys], args=args))
        if pushed < 0:
            raise EpochLost("epoch changed: Redis lost its contents")
        return pushed

    @redis_errors
    async def pop(self, lane_keys: Sequence[str], count: int, block: float) -> list[str]:
        """Block until one lane has ids, then take up to `count` from the first non-empty."""
        if not lane_keys or count <= 0:
            return []
        block = longest_block(
            self.client.connection_pool.connection_kwargs["socket_timeout"], block
        )
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


def check_scratch_prefix(prefix: str, configured_prefix: str) -> None:
    """Refuse a scratch prefix (bench, demo) whose wipe would reach a key of the configured
    one: the same prefix, a shorter one covering it, or one inside its key families."""
    if not prefix:
        raise ScratchRefused("refusing to wipe Redis keys without a key prefix")
    for root in Keys(configured_prefix).roots:
        if root.startswith(prefix) or prefix.startswith(root):
            raise ScratchRefused(
                f"refusing to wipe the Redis keys {prefix + '*'!r}: they include keys of the "
                f"configured redis.key_prefix {configured_prefix!r} (its {root + '*'!r}), "
                "which the queue's own processes use. Nothing was changed; pass another "
                "--prefix."
            )


_GLOB = str.maketrans({char: "\\" + char for char in "*?[]\\"})


def wipe_scratch_keys(url: str, prefix: str, configured_prefix: str) -> int:
    """Delete every key under a scratch prefix, after check_scratch_prefix; return how many."""
    check_scratch_prefix(prefix, configured_prefix)
    # Escaped, so a prefix holding glob characters matches only itself.
    pattern = prefix.translate(_GLOB) + "*"
    deleted = 0
    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    except _DRIVER_ERRORS as error:
        raise RedisUnavailable(f"Redis is unavailable: {error}") from error
    finally:
        client.close()
    return deleted


MIN_REDIS_VERSION = (7, 0)  # BLMPOP


def redis_problem(url: str, timeout: float) -> str | None:
    """Why the Redis at `url` cannot serve Conveyor (unreachable, or older than 7.0), or
    None. Synchronous: for start-up checks before any event loop runs."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        version = str(client.info("server").get("redis_version", "0"))
    except (redis.RedisError, OSError) as error:
        return str(error) or type(error).__name__
    finally:
        client.close()
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_REDIS_VERSION:
        return f"it runs Redis {version}, and Conveyor needs 7.0 or later (for BLMPOP)"
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
