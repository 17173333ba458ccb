"""Replay a dead job with an edited payload (the dead-letter view's "edit and replay").

The new payload is checked as an enqueue checks it, before anything changes: JSON, within
`jobs.max_payload_bytes`, and valid for the task's payload model when this process knows
the task (`Admin(tasks=...)`, `--app`); a worker validates it again when it runs.

Encrypted fields (`encryption.fields`, which always come with `encryption.keys`) stay
sealed. The operator sees them sealed (the API and the dashboard never show clear values)
and may leave a sealed value as it is, or type a new clear value; either way every field
is sealed afresh before it is stored, as an enqueue seals it. A sealed value that was not
this job's own at that field is refused: it would never open. The audit row records the
payload before and after with every encrypted field masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson

from conveyor.admin.base import AdminBase, check_actor, check_job_id
from conveyor.admin.errors import AdminConflict, AdminError, AdminNotFound
from conveyor.admin.models import JobActionResult
from conveyor.encryption import REDACTED, PayloadCipher
from conveyor.errors import PayloadError
from conveyor.vocabulary import DEAD, QUEUED, RETRY_SCHEDULED

ACTION = "replay_edited"


def parse_payload_text(text: str | bytes) -> Any:
    """The payload an operator typed (CLI, dashboard), as JSON; AdminError if it is not."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise AdminError(f"payload is not valid JSON: {error}") from None


class ReplayEditMixin(AdminBase):
    async def replay_edited(self, job_id: UUID | str, payload: Any, actor: str) -> JobActionResult:
        """Replay a dead job with `payload` instead of its own (attempts reset, as a
        replay). Refused, with nothing changed, for a job that is not dead and for a
        payload an enqueue would refuse."""
        identifier = check_job_id(job_id)
        actor = check_actor(actor)
        payload = _plain_json(payload)
        cipher = PayloadCipher(self.settings.encryption.keys, self.settings.encryption.fields)
        async with self.transaction() as tx:
            job = await tx.lock_job(identifier, self.scope)
            if job is None:
                raise AdminNotFound(f"no job with id {identifier}")
            if job.status != DEAD:
                shown = RETRY_SCHEDULED if job.status == QUEUED and job.attempt > 0 else job.status
                raise AdminConflict(
                    f"job {identifier} is {shown}, not dead: only a dead job can be replayed "
                    "with an edited payload"
                )
            before = await tx.job_payload(identifier)
            stored = self._checked_payload(job.task, identifier, payload, cipher)
            message = f"replayed with an edited payload by {actor}"
            changed = await tx.replay_edited(identifier, stored, message, self.scope)
            if changed is None:  # unreachable while we hold the row lock; say so if not
                raise AdminConflict(f"job {identifier} is no longer dead")
            detail = {
                "previous_status": DEAD,
                "queue": job.queue_name,
                "task": job.task,
                "payload_before": masked(before, cipher),
                "payload_after": masked(orjson.loads(stored), cipher),
            }
            await tx.record_audit(
                actor, ACTION, f"job:{identifier}", detail, "ok",
                **self.audit_scope([job.tenant], [job.queue_name]),
            )  # fmt: skip
        return JobActionResult(
            action=ACTION,
            job_id=identifier,
            changed=True,
            previous_status=DEAD,
            status=QUEUED,
            message=f"job {identifier} (dead) queued to run again now with the edited payload",
        )

    def _checked_payload(
        self, task_name: str, job_id: UUID, payload: Any, cipher: PayloadCipher
    ) -> str:
        """The edited payload as the JSON text to store (validated, fields sealed)."""
        seal: Callable[[Any], Any] | None = None
        clear = payload
        limit = self.settings.jobs.max_payload_bytes
        task = self.tasks.get(task_name)
        try:
            if cipher.enabled:
                # Open what stayed sealed (bound to this job and field, so a value copied
                # from elsewhere fails here): the model sees the clear payload, and every
                # field is sealed afresh, as an enqueue seals it.
                clear = cipher.decrypt(payload, job_id)

                def seal(value: Any) -> Any:
                    return cipher.encrypt(value, job_id)

            if task is not None:
                return task.encode_payload(clear, limit, seal)
            text = orjson.dumps(clear if seal is None else seal(clear))
        except PayloadError as error:
            raise AdminError(f"payload refused: {error}") from None
        if len(text) > limit:
            raise AdminError(
                f"payload is {len(text)} bytes, over the {limit}-byte limit "
                "(jobs.max_payload_bytes)"
            )
        return text.decode()


def _plain_json(payload: Any) -> Any:
    """`payload` as the JSON value it stands for; AdminError if it is none."""
    try:
        value = orjson.loads(orjson.dumps(payload))
    except TypeError as error:
        raise AdminError(f"payload is not JSON: {error}") from None
    if _holds_nul(value):
        raise AdminError("payload must not contain NUL characters (jsonb cannot hold them)")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def masked(payload: Any, cipher: PayloadCipher) -> Any:
    """`payload` with every encrypted field's value (sealed or clear) replaced by a mark:
    the audit log never holds a secret, nor its ciphertext."""
    if not cipher.paths or not isinstance(payload, dict):
        return payload
    result = orjson.loads(orjson.dumps(payload))
    for path in cipher.paths:
        node: Any = result
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = REDACTED
    return result
