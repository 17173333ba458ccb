"""Weighted queues: which queue a worker tries first on each fetch.

`--queues email:5,warmup:1` gives each fetch a fresh random order in which a queue of
weight w comes first w times as often as a queue of weight 1 (Sidekiq's weighted mode).
When every queue has work, each one's share of the fetches is its weight over the sum;
an empty queue is skipped by the pop, so its share goes to the others. Without any
weight the order is the one given, strictly (the default).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from conveyor.tasks import check_queue_name

# A weight is the part after the last ':' when it is all digits. Queue names may hold
# ':' themselves (`warmup:process`), so a queue whose last part is a number is written
# with an explicit weight: `reports:2024:1`.
MAX_WEIGHT = 1000


@dataclass(frozen=True)
class QueueChoice:
    """The queues a worker serves, in the order given, and their weights (empty: strict)."""

    queues: list[str]
    weights: dict[str, int] = field(default_factory=dict)

    @property
    def weighted(self) -> bool:
        return bool(self.weights)


def parse_queue_spec(items: Iterable[str]) -> QueueChoice:
    """`["email:5", "warmup:process:1"]` -> queues and weights; ValueError naming the
    item that is not a queue, not a weight, or repeated."""
    queues: list[str] = []
    weights: dict[str, int] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, weight = _split_weight(item)
        check_queue_name(name)
        if name in queues:
            raise ValueError(f"queue {name!r} is listed twice")
        queues.append(name)
        if weight is not None:
            weights[name] = weight
    if weights:
        # One weighted queue makes the worker weighted: the others count as weight 1.
        weights = {name: weights.get(name, 1) for name in queues}
    return QueueChoice(queues, weights)


def _split_weight(item: str) -> tuple[str, int | None]:
    name, colon, last = item.rpartition(":")
    if not colon or not last.isdigit():
        return item, None
    weight = int(last)
    if not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"{item!r}: a queue's weight must be 1-{MAX_WEIGHT}, not {weight}")
    return name, weight


def weighted_order(
    queues: list[str], weights: Mapping[str, int], rng: random.Random | None = None
) -> list[str]:
    """A random order where each queue comes first with probability weight / total.

    Sorting by u ** (1 / w) (u uniform in (0, 1]) draws a weighted sample without
    replacement in one pass (Efraimidis and Spirakis), so the first place, and each later
    place among the queues left, goes to a queue in proportion to its weight."""
    draw = (rng or _RNG).random

    def key(queue: str) -> float:
        return float((1.0 - draw()) ** (1.0 / weights.get(queue, 1)))

    return sorted(queues, key=key, reverse=True)


# Not for secrets: only which queue a worker looks at first.
_RNG = random.Random()  # noqa: S311
