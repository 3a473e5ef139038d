"""Form submissions: each settings form's idempotency key, and the one-time message it left.

Every form on the settings pages carries a random key. The first POST with a key *claims*
it and does the work; its result — the page that shows it, the status that page answers
with, and a one-time message (words, field errors, what was typed) — is then stored under
the key. A second POST with the same key (a double click, a form sent again) does nothing:
it is sent to the same page. The message is *taken* by the first page that shows it, so
reloading that page shows the page without it and repeats nothing.

Keys belong to an owner (the signed-in account, or a signed-out browser's form secret): a
key claimed by one owner is never answered to another. Rows are kept a day, long enough for
any resent form; :meth:`FormSubmissions.prune` forgets them after.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from permalink.db import Conflict, Conn, Database, transaction

#: How long a submission is remembered (seconds).
KEEP_S: Final = 86_400.0
_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")

ClaimState = Literal["new", "done", "running", "foreign"]


def valid_key(key: object) -> bool:
    """Whether ``key`` looks like a form key (random url-safe text, 16-64 characters)."""
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a submission led to: where it is shown, with which status and one-time message."""

    location: str
    status: int = 200
    message: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Claim:
    """``new``: this request does the work. ``done``: it was done (``outcome`` says where).
    ``running``: another request is doing it now. ``foreign``: another owner's key."""

    state: ClaimState
    outcome: Outcome | None = None


def _outcome(row: Mapping[str, Any]) -> Outcome:
    return Outcome(
        location=str(row["location"]),
        status=int(row["status"]),
        message=json.loads(row["message"]) if row["message"] else {},
    )


class FormSubmissions:
    """Idempotency keys and one-time messages, in the store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, key: str, owner: str, now: float) -> Claim:
        """Claim ``key`` for ``owner``: the first claim is ``new``; later ones say how the
        first went."""
        if not valid_key(key):
            raise ValueError("a form key is 16-64 url-safe characters")

        def insert(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO form_submissions (form_key, owner, created) VALUES (?, ?, ?)",
                (key, owner, now),
            )

        try:
            await self._db.run(insert)
        except Conflict:
            return await self.state(key, owner)
        return Claim("new")

    async def state(self, key: str, owner: str) -> Claim:
        """How a claimed key stands now (never ``new``)."""

        def select(conn: Conn) -> Claim:
            row = conn.one("SELECT * FROM form_submissions WHERE form_key = ?", (key,))
            if row is None or row["owner"] != owner:
                return Claim("foreign")
            if row["location"] is None:
                return Claim("running")
            return Claim("done", _outcome(row))

        return await self._db.run(select)

    async def finish(self, key: str, owner: str, outcome: Outcome) -> None:
        """Record what the claimed submission led to (its message not yet shown)."""
        text = json.dumps(dict(outcome.message), separators=(",", ":")) if outcome.message else ""

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE form_submissions SET location = ?, status = ?, message = ? "
                "WHERE form_key = ? AND owner = ?",
                (outcome.location, outcome.status, text, key, owner),
            )

        await self._db.run(update)

    async def show_again(self, key: str, owner: str) -> None:
        """Let the finished submission's message be shown once more (the form was sent
        again: its sender should see what the first send led to)."""

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE form_submissions SET shown = 0 WHERE form_key = ? AND owner = ? "
                "AND location IS NOT NULL",
                (key, owner),
            )

        await self._db.run(update)

    async def release(self, key: str, owner: str) -> None:
        """Forget an unfinished claim (the work failed before it changed anything), so the
        same form can be sent again."""

        def delete(conn: Conn) -> None:
            conn.execute(
                "DELETE FROM form_submissions WHERE form_key = ? AND owner = ? "
                "AND location IS NULL",
                (key, owner),
            )

        await self._db.run(delete)

    async def take_message(self, key: str, owner: str) -> Outcome | None:
        """The finished submission's outcome the first time it is asked for; None after,
        or for a key that is not ``owner``'s or not finished."""
        if not valid_key(key):
            return None

        def take(conn: Conn) -> Outcome | None:
            with transaction(conn):
                row = conn.one(
                    "SELECT * FROM form_submissions WHERE form_key = ? AND owner = ? "
                    "AND location IS NOT NULL AND shown = 0",
                    (key, owner),
                )
                if row is None:
                    return None
                taken = conn.execute(
                    "UPDATE form_submissions SET shown = 1 WHERE form_key = ? AND shown = 0",
                    (key,),
                ).rowcount
                return _outcome(row) if taken == 1 else None

        return await self._db.run(take)

    async def prune(self, before: float) -> int:
        """Forget submissions made before ``before``; returns how many."""

        def delete(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM form_submissions WHERE created < ?", (before,)
            ).rowcount

        return await self._db.run(delete)


__all__ = ["KEEP_S", "Claim", "ClaimState", "FormSubmissions", "Outcome", "valid_key"]
