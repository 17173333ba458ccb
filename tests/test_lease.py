"""The maintenance lease (store/lease.py) on the shared server: one holder at a time, renewed
by its holder, taken over once expired or released."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from conveyor.config import Settings
from conveyor.lanes import Lanes
from conveyor.queuer import Queuer
from conveyor.store import Store
from conveyor.store.lease import ELECTION, LeaseElection
from conveyor.store.listen import Listener


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings, "test", 2)
    yield opened
    await opened.close()


async def test_one_holder_until_it_expires(store: Store) -> None:
    assert await store.take_leader_lease(ELECTION, "a", 0.5)
    assert not await store.take_leader_lease(ELECTION, "b", 5)
    assert await store.take_leader_lease(ELECTION, "a", 0.5), "the holder renews"
    await asyncio.sleep(0.7)
    assert await store.take_leader_lease(ELECTION, "b", 5), "an expired lease is taken"
    assert not await store.take_leader_lease(ELECTION, "a", 5)
    await store.release_leader_lease(ELECTION, "a")  # not the holder: changes nothing
    assert not await store.take_leader_lease(ELECTION, "a", 5)
    await store.release_leader_lease(ELECTION, "b")
    assert await store.take_leader_lease(ELECTION, "a", 5), "a released lease is free"


async def test_elections_hand_over_on_close(store: Store) -> None:
    first = LeaseElection(store, lead=True)
    second = LeaseElection(store, lead=True)
    await first.renew()
    await second.renew()
    assert first.is_leader and not second.is_leader
    await first.close()
    assert not first.is_leader
    await second.renew()
    assert second.is_leader
    await second.close()


async def test_a_queuer_not_leading_never_asks(store: Store) -> None:
    idle = LeaseElection(store, lead=False)
    await idle.ensure_open()
    assert not idle.alive and not idle.is_leader
    await idle.close()


def test_the_queuer_elects_by_lease_only_without_a_session(
    settings: Settings, store: Store
) -> None:
    def election(**overrides: object) -> object:
        changed = settings.model_copy(
            update={"database": settings.database.model_copy(update=overrides)}
        )
        # Lanes connect on first use: none is made here.
        return Queuer(changed, store, Lanes.open(changed), maintenance=True).listener

    assert isinstance(election(), Listener)
    assert isinstance(election(pooler_mode="transaction"), LeaseElection)
    direct = election(pooler_mode="transaction", direct_url=settings.database.url)
    assert isinstance(direct, Listener)
