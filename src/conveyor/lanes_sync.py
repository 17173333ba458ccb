"""The synchronous Redis calls, made before any event loop runs: the start-up check of a
Redis and the guarded wipe of a scratch key prefix (`conveyor bench` and `demo`)."""

from __future__ import annotations

import redis
import redis.exceptions

from conveyor.errors import RedisUnavailable, ScratchRefused
from conveyor.lanes import Keys
from conveyor.redis_endpoints import DRIVER_ERRORS

_DRIVER_ERRORS = DRIVER_ERRORS


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
