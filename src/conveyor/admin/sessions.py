"""Login sessions of the web dashboard, kept in PostgreSQL so that they can be ended.

The caller gets a random session id to put in its cookie; PostgreSQL keeps only the id's
SHA-256, who the session is for, with which role and credential fingerprint, and when it
ends (fixed at opening: activity never extends it).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from conveyor.admin.base import AdminBase
from conveyor.admin.errors import AdminError

ID_BYTES = 32


@dataclass(frozen=True)
class WebSession:
    subject: str  # "user:<name>" or "token:<name>"
    role: str
    credential: str  # fingerprint of the password hash or token it was opened with
    expires_in: float  # seconds


def _id_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


class WebSessionsMixin(AdminBase):
    async def open_web_session(
        self, subject: str, role: str, credential: str, lifetime: float
    ) -> str:
        """Store a new session; return its id (the cookie's secret)."""
        if lifetime <= 0:
            raise AdminError("a session's lifetime must be positive")
        session_id = secrets.token_urlsafe(ID_BYTES)
        async with self.transaction() as tx:
            await tx.prune_web_sessions()
            await tx.open_web_session(_id_hash(session_id), subject, role, credential, lifetime)
        return session_id

    async def web_session(self, session_id: str) -> WebSession | None:
        """The live session with this id, or None (unknown, revoked or expired)."""
        row = await self.read(self.store.find_web_session(_id_hash(session_id)))
        if row is None:
            return None
        return WebSession(row.subject, row.role, row.credential, row.expires_in)

    async def end_web_session(self, session_id: str) -> None:
        """Revoke the session: every copy of its cookie stops working."""
        await self.read(self.store.revoke_web_session(_id_hash(session_id)))
