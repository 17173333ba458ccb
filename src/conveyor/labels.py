"""Tags and meta: what a job may be labelled with at enqueue, and searched by later.

Tags are short names (`invoice`, `customer:42`); meta is a small flat JSON object of
scalars (`{"customer": "acme", "batch": 7}`). Both are stored as they are given
(`jobs.tags`, `jobs.meta`) and found through GIN indexes (migration 021), so the rules
here keep them small and free of the characters the API and CLI use as separators.
The same rules check a search, so a search for a tag no job can carry is refused
instead of answered with an empty page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import orjson

MetaValue: TypeAlias = str | int | float | bool
Meta: TypeAlias = dict[str, MetaValue]

TAG = re.compile(r"^[A-Za-z0-9_.:/\-]+$")
MAX_TAG_LENGTH = 64
MAX_TAGS = 20
META_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
MAX_META_KEY_LENGTH = 64
MAX_META_KEYS = 32
MAX_META_BYTES = 4096  # the whole object as JSON
INT64 = 2**63


def check_tags(tags: object, what: str = "tags") -> list[str]:
    """The tags in their given order without repeats; ValueError naming the bad one."""
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValueError(f"{what} must be a list of strings, not {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{what}: at most {MAX_TAGS} tags, not {len(tags)}")
    checked: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not TAG.match(tag) or len(tag) > MAX_TAG_LENGTH:
            raise ValueError(
                f"{what}: tag {tag!r} must be 1-{MAX_TAG_LENGTH} letters, digits, "
                "'_', '.', ':', '/', '-'"
            )
        if tag not in checked:
            checked.append(tag)
    return checked


def check_meta(meta: object, what: str = "meta") -> Meta:
    """A flat object of scalar values, small enough to index; ValueError naming the
    offending key."""
    if not isinstance(meta, Mapping):
        raise ValueError(f"{what} must be an object (a dict), not {type(meta).__name__}")
    if len(meta) > MAX_META_KEYS:
        raise ValueError(f"{what}: at most {MAX_META_KEYS} keys, not {len(meta)}")
    checked: Meta = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not META_KEY.match(key) or len(key) > MAX_META_KEY_LENGTH:
            raise ValueError(
                f"{what}: key {key!r} must be 1-{MAX_META_KEY_LENGTH} letters, digits, "
                "'_', '.', '-'"
            )
        checked[key] = _meta_value(value, f"{what}[{key!r}]")
    size = len(orjson.dumps(checked))
    if size > MAX_META_BYTES:
        raise ValueError(f"{what} is {size} bytes as JSON; the limit is {MAX_META_BYTES}")
    return checked


def _meta_value(value: Any, what: str) -> MetaValue:
    if isinstance(value, bool | str):
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{what} must not contain NUL characters")
        return value
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise ValueError(f"{what} must fit in 64 bits, not {value}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number, not {value}")
        return value
    raise ValueError(
        f"{what} must be a string, an integer, a number or a boolean, not {type(value).__name__}"
    )


def parse_meta_pairs(pairs: Sequence[str]) -> Meta:
    """`key=text` (a string) or `key:=json` (a number, true or false) pairs, as the CLI
    takes them."""
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, typed, raw = _split_pair(pair)
        if typed:
            try:
                meta[key] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ValueError(
                    f"meta {pair!r}: after ':=' give a JSON number, true or false"
                ) from None
        else:
            meta[key] = raw
    return check_meta(meta)


def _split_pair(pair: str) -> tuple[str, bool, str]:
    key, sep, raw = pair.partition("=")
    if not sep or not key:
        raise ValueError(f"meta {pair!r} must be key=value (a string) or key:=value (JSON)")
    if key.endswith(":"):
        return key[:-1], True, raw
    return key, False, raw
