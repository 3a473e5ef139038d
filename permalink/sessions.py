"""Server-side records of the accountant's sign-ins, so signing out really ends a session.

The session itself travels in a sealed cookie (see ``web.settings.session``): the KashFlow
credentials never rest on the server. What the store keeps is only that a session with a
random id exists for an account, until when, and whether it was ended — by signing out, by
KashFlow refusing its password, or by the account ending all its sessions (after a
password change). Every settings page asks :meth:`SessionRecords.live`, so an ended
session stops working at once in every web process.
"""

from __future__ import annotations

import secrets

from permalink.accounts import account_key
from permalink.db import Conn, Database

#: Random bytes in a session id (url-safe base64 in the cookie and the table).
SESSION_ID_BYTES = 24


class SessionRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, account: str, *, now: float, ttl_s: float) -> str:
        """Record a new session for ``account``; returns its id."""
        key = account_key(account)
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)

        def insert(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO sessions (id, account, created, expires) VALUES (?, ?, ?, ?)",
                (session_id, key, now, now + ttl_s),
            )

        await self._db.run(insert)
        return session_id

    async def live(self, session_id: str, account: str, now: float) -> bool:
        """Whether the session exists for ``account``, has not expired and was not ended."""
        if not session_id:
            return False
        key = account_key(account)

        def select(conn: Conn) -> bool:
            row = conn.one(
                "SELECT 1 AS live FROM sessions WHERE id = ? AND account = ? AND ended IS NULL"
                " AND expires > ?",
                (session_id, key, now),
            )
            return row is not None

        return await self._db.run(select)

    async def end(self, session_id: str, now: float) -> bool:
        """End one session (signing out); False if it was not live."""

        def update(conn: Conn) -> int:
            return conn.execute(
                "UPDATE sessions SET ended = ? WHERE id = ? AND ended IS NULL", (now, session_id)
            ).rowcount

        return await self._db.run(update) == 1

    async def end_all(self, account: str, now: float, *, keep: str = "") -> int:
        """End every live session of ``account`` except ``keep``; returns how many."""
        key = account_key(account)

        def update(conn: Conn) -> int:
            return conn.execute(
                "UPDATE sessions SET ended = ? WHERE account = ? AND ended IS NULL AND id != ?",
                (now, key, keep),
            ).rowcount

        return await self._db.run(update)

    async def prune(self, now: float) -> int:
        """Forget sessions that expired or ended more than a day ago."""

        def delete(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM sessions WHERE expires < ? OR ended < ?", (now - 86_400, now - 86_400)
            ).rowcount

        return await self._db.run(delete)


__all__ = ["SESSION_ID_BYTES", "SessionRecords"]
