"""Field-level payload encryption: named fields are stored as Fernet tokens.

The client encrypts before the row is written and the worker decrypts just before the
handler runs, so the clear value exists only in the producer and the handler: never in
PostgreSQL, Redis (which holds only ids anyway), job logs, the API or the dashboard.
Several keys allow rotation: the first encrypts, every key decrypts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from conveyor.errors import PayloadError

MARK = "$encrypted"


class PayloadCipher:
    def __init__(self, keys: Sequence[str], fields: Sequence[str]) -> None:
        self.paths = [tuple(field.split(".")) for field in fields]
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys]) if keys else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None and bool(self.paths)

    def encrypt(self, payload: Any) -> Any:
        if not self.enabled or not isinstance(payload, dict):
            return payload
        assert self._fernet is not None  # noqa: S101
        result = copy.deepcopy(payload)
        for path in self.paths:
            parent = _parent(result, path)
            if parent is not None and path[-1] in parent:
                token = self._fernet.encrypt(orjson.dumps(parent[path[-1]]))
                parent[path[-1]] = {MARK: token.decode()}
        return result

    def decrypt(self, payload: Any) -> Any:
        if self._fernet is None or not isinstance(payload, dict):
            return payload
        result = copy.deepcopy(payload)
        for path in self.paths:
            parent = _parent(result, path)
            value = None if parent is None else parent.get(path[-1])
            if isinstance(value, dict) and set(value) == {MARK}:
                try:
                    parent[path[-1]] = orjson.loads(self._fernet.decrypt(value[MARK].encode()))  # type: ignore[index]
                except (InvalidToken, orjson.JSONDecodeError):
                    raise PayloadError(
                        f"cannot decrypt payload field {'.'.join(path)!r}: no configured key "
                        "matches (was encryption.keys rotated without keeping the old key?)",
                        field=".".join(path),
                    ) from None
        return result


def _parent(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = payload
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
