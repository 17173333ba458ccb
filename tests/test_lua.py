"""push.lua, called directly through `Lanes.push` against the real Redis (own key prefix).

The script is the only thing standing between a wiped Redis and a queuer that would go on
pushing into it as if nothing happened, so it is tested on its own, not only through the
queuer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib import resources

import pytest

from conveyor.config import Settings
from conveyor.lanes import EpochLost, Lanes
from conveyor.vocabulary import HIGH, LANES, LOW, NORMAL


@pytest.fixture
async def lanes(settings_factory: Callable[..., Settings]) -> AsyncIterator[Lanes]:
    opened = Lanes.open(settings_factory())
    yield opened
    await opened.close()


async def everything_in(lanes: Lanes, queue: str) -> dict[str, list[str]]:
    """Each lane's ids in the order workers would pop them (BLMPOP takes from the right)."""
    found = {}
    for lane in LANES:
        items = await lanes.client.lrange(lanes.keys.lane(queue, lane), 0, -1)
        found[lane] = [item.decode() for item in reversed(items)]
    return found


async def test_pushes_to_several_lanes_in_order_and_counts(lanes: Lanes) -> None:
    epoch, created = await lanes.claim_epoch()
    assert created
    groups = {
        lanes.keys.lane("mail", HIGH): ["h1", "h2"],
        lanes.keys.lane("mail", NORMAL): ["n1"],
        lanes.keys.lane("mail", LOW): ["l1", "l2", "l3"],
    }
    assert await lanes.push(epoch, groups) == 6
    assert await everything_in(lanes, "mail") == {
        HIGH: ["h1", "h2"],
        NORMAL: ["n1"],
        LOW: ["l1", "l2", "l3"],
    }
    assert await lanes.pop(lanes.keys.lanes("mail"), 10, 0.1) == ["h1", "h2"]
    assert await lanes.push(epoch, {lanes.keys.lane("mail", HIGH): ["h3"]}) == 1
    assert (await everything_in(lanes, "mail"))[HIGH] == ["h3"]


async def test_empty_groups_are_skipped(lanes: Lanes) -> None:
    epoch, _ = await lanes.claim_epoch()
    high, low = lanes.keys.lane("q", HIGH), lanes.keys.lane("q", LOW)
    assert await lanes.push(epoch, {high: [], low: []}) == 0
    assert await lanes.push(epoch, {high: [], low: ["a"]}) == 1
    assert await everything_in(lanes, "q") == {HIGH: [], NORMAL: [], LOW: ["a"]}


async def test_groups_longer_than_the_lua_stack_are_pushed_whole_and_in_order(
    lanes: Lanes,
) -> None:
    epoch, _ = await lanes.claim_epoch()
    many = [f"n{i}" for i in range(2500)]
    some = [f"h{i}" for i in range(1001)]
    groups = {lanes.keys.lane("bulk", NORMAL): many, lanes.keys.lane("bulk", HIGH): some}
    assert await lanes.push(epoch, groups) == 3501
    assert await everything_in(lanes, "bulk") == {HIGH: some, NORMAL: many, LOW: []}


@pytest.mark.parametrize("stored", ["another-epoch", None], ids=["changed", "missing"])
async def test_a_changed_or_missing_epoch_pushes_nothing(lanes: Lanes, stored: str | None) -> None:
    epoch, _ = await lanes.claim_epoch()
    if stored is None:
        await lanes.client.delete(lanes.keys.epoch)  # what a FLUSHALL or a restart leaves
    else:
        await lanes.client.set(lanes.keys.epoch, stored)
    groups = {lanes.keys.lane("mail", lane): [f"{lane}-1", f"{lane}-2"] for lane in LANES}
    with pytest.raises(EpochLost):
        await lanes.push(epoch, groups)
    assert await everything_in(lanes, "mail") == {lane: [] for lane in LANES}
    # The script's own answer, without Lanes in between: -1 and still nothing pushed.
    script = resources.files("conveyor").joinpath("lua", "push.lua").read_text(encoding="utf-8")
    keys = [lanes.keys.epoch, *groups]
    args = [epoch, *(str(len(ids)) for ids in groups.values())]
    args += [job for ids in groups.values() for job in ids]
    assert await lanes.client.eval(script, len(keys), *keys, *args) == -1
    assert await everything_in(lanes, "mail") == {lane: [] for lane in LANES}
    # With the epoch Redis holds now, the same push goes through.
    current = await lanes.current_epoch()
    if current is None:
        current, _ = await lanes.claim_epoch()
    assert await lanes.push(current, groups) == 6
