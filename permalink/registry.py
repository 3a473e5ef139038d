"""The link registry: which permalinks each KashFlow account has minted, and which are revoked.

A row describes a link (customer, scope, expiry, who minted it, how often it was opened);
it never holds the token or any credential, so the table is safe to show on the settings
page. Revocation has two forms: one link by id, and a per-account "revoke everything
issued before T" cut-off, which also kills links the registry never saw (minted before it
existed, or by an older deployment). The resolver asks :meth:`LinkRegistry.is_revoked` on
every request; it is one query over two primary keys and is deliberately not cached,
because a revocation made by another process (the CLI) must take effect at once.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal, get_args

from permalink.accounts import account_key
from permalink.db import Database, transaction
from permalink.scopes import Scope

MintedBy = Literal["settings", "cli", "bot"]
LinkStatus = Literal["active", "revoked", "expired"]

MINTED_BY: frozenset[str] = frozenset(get_args(MintedBy))
#: Random bytes in a generated link id (hex-encoded, so twice as many characters).
LINK_ID_BYTES = 16
MAX_PAGE = 500

_LINK_ID = re.compile(r"[0-9a-f]{16,64}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS links (
    link_id       TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    customer_code TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    scope         TEXT NOT NULL,
    created       INTEGER NOT NULL,
    expires       INTEGER,
    minted_by     TEXT NOT NULL CHECK (minted_by IN ('settings', 'cli', 'bot')),
    opens         INTEGER NOT NULL DEFAULT 0,
    last_opened   INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX IF NOT EXISTS links_by_account ON links (account, created DESC);
CREATE TABLE IF NOT EXISTS link_cutoffs (
    account        TEXT PRIMARY KEY,
    revoked_before INTEGER NOT NULL
);
"""


def new_link_id() -> str:
    """A fresh random link id (hex). Never sequential: ids may appear in URLs and pages."""
    return secrets.token_hex(LINK_ID_BYTES)


@dataclass(frozen=True, slots=True)
class LinkRecord:
    link_id: str
    account: str
    customer_code: str
    customer_name: str
    scope: str
    created: int
    expires: int | None
    minted_by: str
    opens: int
    last_opened: int | None
    revoked_at: int | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: float) -> LinkStatus:
        """What the settings page shows: revoked wins over expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"


def _record(row: sqlite3.Row) -> LinkRecord:
    return LinkRecord(
        link_id=row["link_id"],
        account=row["account"],
        customer_code=row["customer_code"],
        customer_name=row["customer_name"],
        scope=row["scope"],
        created=row["created"],
        expires=row["expires"],
        minted_by=row["minted_by"],
        opens=row["opens"],
        last_opened=row["last_opened"],
        revoked_at=row["revoked_at"],
    )


def _check_link_id(link_id: str) -> None:
    if not isinstance(link_id, str) or _LINK_ID.fullmatch(link_id) is None:
        raise ValueError("a link id is 16-64 lower-case hex characters")


class LinkRegistry:
    """Links per account: add, list, revoke, and the resolver's revocation check."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.ensure(SCHEMA)

    async def add(
        self,
        account: str,
        *,
        customer_code: str,
        customer_name: str,
        scope: str,
        created: int,
        expires: int | None = None,
        minted_by: MintedBy,
        link_id: str | None = None,
    ) -> LinkRecord:
        """Record a minted link; ``link_id`` is the id sealed in its token (or a new one)."""
        record = LinkRecord(
            link_id=new_link_id() if link_id is None else link_id,
            account=account_key(account),
            customer_code=customer_code,
            customer_name=customer_name,
            scope=scope,
            created=int(created),
            expires=None if expires is None else int(expires),
            minted_by=minted_by,
            opens=0,
            last_opened=None,
            revoked_at=None,
        )
        _check_link_id(record.link_id)
        if scope != str(Scope.parse(scope)):
            raise ValueError("a link scope is written as Scope writes it (all, unpaid, invoice:N)")
        if minted_by not in MINTED_BY:
            raise ValueError("minted_by is one of: " + ", ".join(sorted(MINTED_BY)))
        if not customer_code:
            raise ValueError("a link needs the customer's code")
        if record.expires is not None and record.expires < record.created:
            raise ValueError("a link cannot expire before it is created")

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO links (link_id, account, customer_code, customer_name, scope, "
                "created, expires, minted_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.link_id,
                    record.account,
                    record.customer_code,
                    record.customer_name,
                    record.scope,
                    record.created,
                    record.expires,
                    record.minted_by,
                ),
            )

        try:
            await self._db.run(insert)
        except sqlite3.IntegrityError:
            # The id itself is not secret, but the message need not repeat it.
            raise ValueError("a link with this id is already registered") from None
        return record

    async def get(self, account: str, link_id: str) -> LinkRecord | None:
        key = account_key(account)

        def select(conn: sqlite3.Connection) -> LinkRecord | None:
            row = conn.execute(
                "SELECT * FROM links WHERE link_id = ? AND account = ?",
                (link_id, key),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._db.run(select)

    async def list(self, account: str, *, limit: int = 50, offset: int = 0) -> list[LinkRecord]:
        """The account's links, newest first."""
        key = account_key(account)
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)

        def select(conn: sqlite3.Connection) -> list[LinkRecord]:
            rows = conn.execute(
                "SELECT * FROM links WHERE account = ? "
                "ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
                (key, limit, offset),
            ).fetchall()
            return [_record(row) for row in rows]

        return await self._db.run(select)

    async def count(self, account: str) -> int:
        key = account_key(account)

        def select(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count(*) FROM links WHERE account = ?", (key,)).fetchone()
            return int(row[0])

        return await self._db.run(select)

    async def revoke(self, account: str, link_id: str, *, now: int | None = None) -> bool:
        """Revoke one of the account's links; False if it has no such (unrevoked) link."""
        key = account_key(account)
        at = int(time.time() if now is None else now)

        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE links SET revoked_at = ? "
                "WHERE link_id = ? AND account = ? AND revoked_at IS NULL",
                (at, link_id, key),
            )
            return cursor.rowcount == 1

        return await self._db.run(update)

    async def revoke_all(self, account: str, now: int) -> int:
        """Revoke every link of the account issued before ``now``, registered or not.

        Returns how many registered links this newly revoked. The cut-off only moves
        forward, so a clock that steps back cannot bring links back to life. A link
        issued in the same second as the cut-off survives it: that is what lets the
        accountant mint fresh links right after revoking everything.
        """
        key = account_key(account)
        cutoff = int(now)

        def update(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO link_cutoffs (account, revoked_before) VALUES (?, ?) "
                    "ON CONFLICT (account) DO UPDATE "
                    "SET revoked_before = max(revoked_before, excluded.revoked_before)",
                    (key, cutoff),
                )
                cursor = conn.execute(
                    "UPDATE links SET revoked_at = ? "
                    "WHERE account = ? AND revoked_at IS NULL AND created < ?",
                    (cutoff, key, cutoff),
                )
                return cursor.rowcount

        return await self._db.run(update)

    async def revoked_before(self, account: str) -> int | None:
        """The account's revoke-all cut-off (unix seconds), if it ever used one."""
        key = account_key(account)

        def select(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT revoked_before FROM link_cutoffs WHERE account = ?", (key,)
            ).fetchone()
            return None if row is None else int(row[0])

        return await self._db.run(select)

    async def is_revoked(self, link_id: str, account: str, issued: int) -> bool:
        """True if this link id was revoked, or the account revoked all links issued before it."""
        key = account_key(account)

        def select(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM links WHERE link_id = ? AND account = ? "
                "AND revoked_at IS NOT NULL) "
                "OR EXISTS (SELECT 1 FROM link_cutoffs WHERE account = ? AND ? < revoked_before)",
                (link_id, key, key, int(issued)),
            ).fetchone()
            return bool(row[0])

        return await self._db.run(select)

    async def record_open(self, link_id: str, now: int) -> bool:
        """Count one opening of a registered link; False if the registry does not know it."""

        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE links SET opens = opens + 1, "
                "last_opened = max(coalesce(last_opened, 0), ?) WHERE link_id = ?",
                (int(now), link_id),
            )
            return cursor.rowcount == 1

        return await self._db.run(update)


__all__ = ["SCHEMA", "LinkRecord", "LinkRegistry", "LinkStatus", "MintedBy", "new_link_id"]
