"""The web's login sessions (web_sessions.sql): open, find, revoke, prune."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class WebSessionRow:
    subject: str  # "user:<name>" or "token:<name>"
    role: str
    credential: str
    expires_in: float  # seconds


class WebSessionStatements(StoreBase):
    async def open_web_session(
        self, id_hash: bytes, subject: str, role: str, credential: str, lifetime: float
    ) -> None:
        """Store a session that ends `lifetime` seconds from now, whatever happens."""
        params = {
            "id_hash": id_hash,
            "subject": subject,
            "role": role,
            "credential": credential,
            "lifetime": lifetime,
        }
        await self._execute("open_web_session", params)

    async def find_web_session(self, id_hash: bytes) -> WebSessionRow | None:
        """The session if it is neither revoked nor expired."""
        return await self._row("find_web_session", {"id_hash": id_hash}, WebSessionRow)

    async def revoke_web_session(self, id_hash: bytes) -> None:
        await self._execute("revoke_web_session", {"id_hash": id_hash})

    async def prune_web_sessions(self) -> int:
        """Delete expired sessions (revoked ones go when they expire); return how many."""
        return max(await self._execute("prune_web_sessions", {}), 0)
