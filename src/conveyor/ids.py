"""Time-ordered job ids (UUID version 7).

New ids land at the right edge of the primary-key index instead of on random pages,
which keeps inserts cheap and the index compact. Python 3.11 has no uuid7, and the layout
is a few lines of RFC 9562.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64 & (0xFFF << 64)  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 random bits
    return uuid.UUID(int=value)


def parse_job_id(value: object) -> uuid.UUID:
    """Accept a UUID or its text; anything else is a clear ValueError, never a DB error."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a job id (expected a UUID)") from None
