"""Statements of one caller group (filled in as that caller moves onto the store)."""

from __future__ import annotations

from conveyor.store.base import StoreBase


class AdminWrites(StoreBase):
    pass
