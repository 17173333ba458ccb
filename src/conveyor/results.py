"""A handler's return value as the job's result: encoded and sealed by the worker, opened
again for whoever reads it (`app.get_job(id).result`, `app.wait`).

A result is kept only if it can be stored as it is: JSON (a pydantic model is dumped to
JSON first), within `jobs.max_result_bytes`, without a NUL character (PostgreSQL's jsonb
refuses one). When it cannot be, the job still completes (its work is done, and running it
again would repeat that work) but without a result, and `result_error` says why: the
attempt's log row carries the sentence, the worker logs it as an error, and a waiter gets
`ResultNotStored` instead of a silent None (docs/results.md).

Fields listed in `encryption.fields` are sealed in a result as in a payload, bound to the
job and to the result (a sealed result value does not open as a payload field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import pydantic

from conveyor.encryption import RESULT_SCOPE, PayloadCipher

DEFAULT_MAX_RESULT_BYTES = 1_048_576
# How PostgreSQL's jsonb would refuse a NUL character: as it appears in orjson's output.
_NUL = b"\\u0000"


@dataclass(frozen=True)
class KeptResult:
    """What `record_outcomes` stores for a completed attempt: the result as JSON text
    (None: the handler returned None, or nothing could be kept), and why not, if not."""

    text: str | None = None
    error: str | None = None


NO_RESULT = KeptResult()


class ResultCodec:
    """Encodes results in the worker and decodes them for readers, under one settings
    object's encryption keys and size limit."""

    def __init__(self, cipher: PayloadCipher | None = None, limit: int = DEFAULT_MAX_RESULT_BYTES):
        self.cipher = cipher
        self.limit = limit

    def encode(self, value: Any, job_id: UUID, task: str) -> KeptResult:
        if value is None:
            return NO_RESULT
        try:
            if isinstance(value, pydantic.BaseModel):
                value = value.model_dump(mode="json")
            if self.cipher is not None:
                value = self.cipher.encrypt(value, job_id, RESULT_SCOPE)
            encoded = orjson.dumps(value)
        except (TypeError, ValueError) as error:
            return _dropped(f"the return value of task {task} is not JSON-serialisable: {error}")
        if len(encoded) > self.limit:
            return _dropped(
                f"the return value of task {task} is {len(encoded)} bytes as JSON, over "
                f"jobs.max_result_bytes ({self.limit} bytes)"
            )
        if _NUL in encoded:
            return _dropped(
                f"the return value of task {task} contains a NUL character (\\u0000), "
                "which PostgreSQL cannot store in JSON"
            )
        return KeptResult(text=encoded.decode())

    def decode(self, stored: Any, job_id: UUID) -> Any:
        """The clear result of a stored one (PayloadError when a sealed field does not
        open: a rotated key that was not kept, or an edited row)."""
        if stored is None or self.cipher is None:
            return stored
        return self.cipher.decrypt(stored, job_id, RESULT_SCOPE)


def _dropped(reason: str) -> KeptResult:
    return KeptResult(error=f"result not stored: {reason}; the job completed without a result")
