"""Field-level payload encryption: named fields are stored sealed with AES-GCM.

The client encrypts before the row is written and the worker decrypts just before the
handler runs, so the clear value exists only in the producer and the handler: never in
PostgreSQL, Redis (which holds only ids anyway), job logs, the API or the dashboard.
Several keys allow rotation: the first encrypts, every key decrypts.

Each sealed value carries its job id and field path as AES-GCM associated data, so a
ciphertext copied into another job or another field (by someone who can write to the
database) fails to decrypt instead of handing one job's secret to another. Values written
before this scheme are Fernet tokens: they still decrypt, but are bound to nothing.

The worker also learns every clear value it decrypted (`Decrypted.secrets`), so that error
text quoting one can be redacted before it is stored.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from conveyor.errors import PayloadError

MARK = "$encrypted"
RESULT_SCOPE = "result"  # sealed values of a job's result are bound to this scope
SEALED = "v2:"  # AES-GCM, nonce || ciphertext, bound to job id and field path
NONCE_BYTES = 12
REDACTED = "[redacted]"
# Shorter clear values are not redacted: replacing every "1" or "ab" in a traceback would
# destroy it, and a value that short is not protected by hiding it anyway.
MIN_REDACTED_CHARS = 4


def _aead_key(fernet_key: str) -> AESGCM:
    """An AES-256 key derived from the configured Fernet key, so `encryption.keys` keeps
    its format and rotation order."""
    raw = base64.urlsafe_b64decode(fernet_key.encode())
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"conveyor payload aes-gcm v2"
    ).derive(raw)
    return AESGCM(derived)


def _associated(job_id: UUID, path: tuple[str, ...], scope: str) -> bytes:
    # Payload values keep the form they were first sealed with (no scope); a result's
    # carry theirs, so a sealed result copied into the payload field of the same name
    # does not open there.
    where = f"{scope}\x00{'.'.join(path)}" if scope else ".".join(path)
    return f"{job_id}\x00{where}".encode()


@dataclass
class Decrypted:
    payload: Any
    secrets: list[str] = field(default_factory=list)


class PayloadCipher:
    def __init__(self, keys: Sequence[str], fields: Sequence[str]) -> None:
        self.paths = [tuple(name.split(".")) for name in fields]
        self._aeads = [_aead_key(key) for key in keys]
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys]) if keys else None

    @property
    def enabled(self) -> bool:
        return bool(self._aeads) and bool(self.paths)

    def encrypt(self, payload: Any, job_id: UUID, scope: str = "") -> Any:
        """`payload` with every configured field sealed; `scope` names what the value is
        when it is not the payload (RESULT_SCOPE for a job's result)."""
        if not self.enabled or not isinstance(payload, dict):
            return payload
        result = copy.deepcopy(payload)
        for path in self.paths:
            parent = _parent(result, path)
            if parent is not None and path[-1] in parent:
                nonce = os.urandom(NONCE_BYTES)
                sealed = self._aeads[0].encrypt(
                    nonce, orjson.dumps(parent[path[-1]]), _associated(job_id, path, scope)
                )
                text = base64.urlsafe_b64encode(nonce + sealed).decode()
                parent[path[-1]] = {MARK: SEALED + text}
        return result

    def decrypt(self, payload: Any, job_id: UUID, scope: str = "") -> Any:
        return self.open(payload, job_id, scope).payload

    def open(self, payload: Any, job_id: UUID, scope: str = "") -> Decrypted:
        """The clear payload, and every clear value as text (for redaction)."""
        if self._fernet is None or not isinstance(payload, dict):
            return Decrypted(payload)
        result = Decrypted(copy.deepcopy(payload))
        for path in self.paths:
            parent = _parent(result.payload, path)
            value = None if parent is None else parent.get(path[-1])
            if parent is not None and isinstance(value, dict) and set(value) == {MARK}:
                clear = self._open_one(value[MARK], job_id, path, scope)
                parent[path[-1]] = clear
                result.secrets.extend(_texts(clear))
        return result

    def _open_one(self, token: Any, job_id: UUID, path: tuple[str, ...], scope: str) -> Any:
        assert self._fernet is not None  # noqa: S101
        try:
            if not isinstance(token, str):
                raise InvalidToken
            if token.startswith(SEALED):
                return orjson.loads(self._open_sealed(token, job_id, path, scope))
            if scope:  # only payloads older than the bound scheme hold Fernet tokens
                raise InvalidToken
            return orjson.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, InvalidTag, ValueError, orjson.JSONDecodeError):
            raise PayloadError(
                f"cannot decrypt {scope or 'payload'} field {'.'.join(path)!r}: "
                "no configured key matches, "
                "or the value was sealed for another job or field (was encryption.keys "
                "rotated without keeping the old key, or was the row edited?)",
                field=".".join(path),
            ) from None

    def _open_sealed(self, token: str, job_id: UUID, path: tuple[str, ...], scope: str) -> bytes:
        blob = base64.urlsafe_b64decode(token[len(SEALED) :].encode())
        nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        for aead in self._aeads:
            try:
                return aead.decrypt(nonce, sealed, _associated(job_id, path, scope))
            except InvalidTag:
                continue
        raise InvalidTag


def _texts(value: Any) -> list[str]:
    """The forms in which a clear value may be quoted by an error message."""
    if isinstance(value, dict):
        return [
            *_texts(orjson.dumps(value).decode()),
            *(t for v in value.values() for t in _texts(v)),
        ]
    if isinstance(value, list):
        return [*_texts(orjson.dumps(value).decode()), *(t for v in value for t in _texts(v))]
    if value is None or isinstance(value, bool):
        return []
    forms = {str(value), repr(value), orjson.dumps(value).decode()}
    return [form for form in forms if len(form) >= MIN_REDACTED_CHARS]


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced, longest first (so a value that contains another
    is removed whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _parent(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = payload
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
