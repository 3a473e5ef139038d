"""The activity log: what happened per account (links opened, requests answered, failures).

Append-only; the settings page reads it newest first with keyset paging (ids only ever
grow, even after pruning, so a page boundary never shifts). Callers pass only safe text —
a customer code or name, a sender address, a human reason — but as a second line of
defence :meth:`ActivityLog.record` *redacts* anything that looks like a token or key
(a long unbroken run of base64/hex characters mixing letters and digits) rather than
refusing it: losing the record of an event would be worse than losing a few characters
of it. Passwords cannot be recognised by their shape; keeping them out is the caller's job.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Final, Literal, get_args

from permalink.accounts import account_key
from permalink.db import Conn, Database, Row

Outcome = Literal["ok", "replied", "ignored", "failed", "pending_retry", "refused"]
OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))

#: The kinds the product records; others are allowed if they are short snake_case names.
LINK_OPENED: Final = "link_opened"
PDF_DOWNLOADED: Final = "pdf_downloaded"
BOT_REQUEST: Final = "bot_request"
LINK_EMAILED: Final = "link_emailed"
TEST_EMAIL: Final = "test_email"
LINK_MINTED: Final = "link_minted"
LINK_REVOKED: Final = "link_revoked"
LINK_RESTORED: Final = "link_restored"
LINK_REISSUED: Final = "link_reissued"

MAX_SUBJECT: Final = 200
MAX_DETAIL: Final = 1000
MAX_PAGE: Final = 500
REDACTED: Final = "[redacted]"

_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")
# 32+ characters of base64url/base64/hex with no separator: link tokens and keys look
# like this; words, codes, dates and email addresses do not.
_BLOB = re.compile(r"[A-Za-z0-9_+/=-]{32,}")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    account: str
    at: int
    kind: str
    subject: str
    outcome: str
    detail: str


def redact(text: str) -> str:
    """``text`` with token-like runs replaced by ``[redacted]``."""

    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        if _LETTER.search(run) and _DIGIT.search(run):
            return REDACTED
        return run

    return _BLOB.sub(replace, text)


def _safe(text: str, limit: int, *, lines: bool) -> str:
    text = _CONTROL.sub(" ", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not lines:
        text = " ".join(text.split())
    text = redact(text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _event(row: Row) -> Event:
    return Event(
        id=int(row["id"]),
        account=row["account"],
        at=row["at"],
        kind=row["kind"],
        subject=row["subject"],
        outcome=row["outcome"],
        detail=row["detail"],
    )


class ActivityLog:
    """Per-account events, newest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        account: str,
        *,
        kind: str,
        outcome: Outcome,
        subject: str = "",
        detail: str = "",
        at: float | None = None,
    ) -> Event:
        """Append one event (``at`` defaults to now). Subject and detail are cleaned,
        shortened and redacted."""
        key = account_key(account)
        if _KIND.fullmatch(kind) is None:
            raise ValueError("an event kind is a short snake_case name")
        if outcome not in OUTCOMES:
            raise ValueError("an event outcome is one of: " + ", ".join(sorted(OUTCOMES)))
        clean_subject = _safe(subject, MAX_SUBJECT, lines=False)
        clean_detail = _safe(detail, MAX_DETAIL, lines=True)
        when = int(time.time() if at is None else at)

        def insert(conn: Conn) -> int:
            return int(
                conn.value(
                    "INSERT INTO activity (account, at, kind, subject, outcome, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (key, when, kind, clean_subject, outcome, clean_detail),
                )
            )

        event_id = await self._db.run(insert)
        return Event(event_id, key, when, kind, clean_subject, outcome, clean_detail)

    async def page(
        self,
        account: str,
        *,
        before_id: int | None = None,
        limit: int = 50,
        kind: str | None = None,
    ) -> list[Event]:
        """Up to ``limit`` events older than ``before_id`` (or the newest), newest first.

        The next page is ``page(account, before_id=events[-1].id)``.
        """
        key = account_key(account)
        limit = max(1, min(limit, MAX_PAGE))
        # Past the largest id either database can give: "from the newest".
        before = (1 << 63) - 1 if before_id is None else before_id

        def select(conn: Conn) -> list[Event]:
            if kind is None:
                rows = conn.all(
                    "SELECT * FROM activity WHERE account = ? AND id < ? ORDER BY id DESC LIMIT ?",
                    (key, before, limit),
                )
            else:
                rows = conn.all(
                    "SELECT * FROM activity WHERE account = ? AND kind = ? AND id < ? "
                    "ORDER BY id DESC LIMIT ?",
                    (key, kind, before, limit),
                )
            return [_event(row) for row in rows]

        return await self._db.run(select)

    async def count(self, account: str, kind: str | None = None) -> int:
        key = account_key(account)

        def select(conn: Conn) -> int:
            if kind is None:
                value = conn.value("SELECT count(*) AS n FROM activity WHERE account = ?", (key,))
            else:
                value = conn.value(
                    "SELECT count(*) AS n FROM activity WHERE account = ? AND kind = ?",
                    (key, kind),
                )
            return int(value)

        return await self._db.run(select)

    async def prune(self, older_than: float) -> int:
        """Delete events (of every account) from before ``older_than``; returns how many."""

        def delete(conn: Conn) -> int:
            return conn.execute("DELETE FROM activity WHERE at < ?", (int(older_than),)).rowcount

        return await self._db.run(delete)


__all__ = [
    "BOT_REQUEST",
    "LINK_EMAILED",
    "LINK_MINTED",
    "LINK_OPENED",
    "LINK_REISSUED",
    "LINK_RESTORED",
    "LINK_REVOKED",
    "OUTCOMES",
    "PDF_DOWNLOADED",
    "TEST_EMAIL",
    "ActivityLog",
    "Event",
    "Outcome",
    "redact",
]
