"""The link registry: which permalinks each KashFlow account has minted, and which are revoked.

A row describes a link (customer, scope, expiry, who minted it, how often it was opened);
it never holds the token or any credential, so the table is safe to show on the settings
page. Since migration 5 a row also keeps the customer's KashFlow id and a *password mark*:
a keyed fingerprint of the API password the link seals (see
:meth:`permalink.keyring.Keyring.fingerprint`), which tells which links a password change
broke without the password being kept.

Revocation has two forms: one link by id, and a per-account "revoke everything
issued before T" cut-off, which also kills links the registry never saw (minted before it
existed, or by an older deployment). The resolver asks :meth:`LinkRegistry.is_revoked` on
every request; it is one query over two primary keys and is deliberately not cached,
because a revocation made by another process (the CLI) must take effect at once.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from permalink.accounts import account_key
from permalink.db import Conflict, Conn, Database, Row, transaction
from permalink.scopes import Scope

MintedBy = Literal["settings", "cli", "bot"]
LinkStatus = Literal["active", "revoked", "expired"]

MINTED_BY: frozenset[str] = frozenset(get_args(MintedBy))
#: Random bytes in a generated link id (hex-encoded, so twice as many characters).
LINK_ID_BYTES = 16
MAX_PAGE = 500

_LINK_ID = re.compile(r"[0-9a-f]{16,64}")


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
    #: The customer's KashFlow id (None for links registered before it was kept).
    customer_id: int | None = None
    #: Fingerprint of the API password sealed in the link (None: made before it was kept).
    password_mark: bytes | None = None

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


def _record(row: Row) -> LinkRecord:
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
        customer_id=row["customer_id"],
        password_mark=None if row["password_mark"] is None else bytes(row["password_mark"]),
    )


def _active(now: int) -> tuple[str, tuple[int]]:
    """The condition (and its parameter) of a link that still opens, as far as rows say."""
    return "revoked_at IS NULL AND (expires IS NULL OR expires > ?)", (now,)


def _check_link_id(link_id: str) -> None:
    if not isinstance(link_id, str) or _LINK_ID.fullmatch(link_id) is None:
        raise ValueError("a link id is 16-64 lower-case hex characters")


class LinkRegistry:
    """Links per account: add, list, revoke, and the resolver's revocation check."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        customer_id: int | None = None,
        password_mark: bytes | None = None,
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
            customer_id=customer_id,
            password_mark=password_mark,
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

        def insert(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO links (link_id, account, customer_code, customer_name, scope, "
                "created, expires, minted_by, customer_id, password_mark) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.link_id,
                    record.account,
                    record.customer_code,
                    record.customer_name,
                    record.scope,
                    record.created,
                    record.expires,
                    record.minted_by,
                    record.customer_id,
                    record.password_mark,
                ),
            )

        try:
            await self._db.run(insert)
        except Conflict:
            # The id itself is not secret, but the message need not repeat it.
            raise ValueError("a link with this id is already registered") from None
        return record

    async def get(self, account: str, link_id: str) -> LinkRecord | None:
        key = account_key(account)

        def select(conn: Conn) -> LinkRecord | None:
            row = conn.execute(
                "SELECT * FROM links WHERE link_id = ? AND account = ?",
                (link_id, key),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._db.run(select)

    async def find(self, link_id: str) -> LinkRecord | None:
        """The link with this id, whichever account made it (for the operator's CLI)."""

        def select(conn: Conn) -> LinkRecord | None:
            row = conn.one("SELECT * FROM links WHERE link_id = ?", (link_id,))
            return None if row is None else _record(row)

        return await self._db.run(select)

    async def for_customer(
        self, account: str, customer_code: str, *, limit: int = 20
    ) -> list[LinkRecord]:
        """One customer's links in the account, newest first."""
        key = account_key(account)
        limit = max(1, min(limit, MAX_PAGE))

        def select(conn: Conn) -> list[LinkRecord]:
            rows = conn.all(
                "SELECT * FROM links WHERE account = ? AND customer_code = ? "  # noqa: S608
                f"ORDER BY created DESC, {conn.dialect.insertion_order} DESC LIMIT ?",
                (key, customer_code, limit),
            )
            return [_record(row) for row in rows]

        return await self._db.run(select)

    async def active_marks(self, account: str, now: int) -> dict[bytes | None, int]:
        """How many of the account's live links carry each password mark (None: no mark)."""
        key = account_key(account)
        condition, params = _active(now)

        def select(conn: Conn) -> dict[bytes | None, int]:
            rows = conn.all(
                "SELECT password_mark, count(*) AS n FROM links "  # noqa: S608 - fixed text
                f"WHERE account = ? AND {condition} GROUP BY password_mark",
                (key, *params),
            )
            return {
                (None if row["password_mark"] is None else bytes(row["password_mark"])): int(
                    row["n"]
                )
                for row in rows
            }

        return await self._db.run(select)

    async def active_with_marks(
        self, account: str, marks: Sequence[bytes | None], now: int
    ) -> list[LinkRecord]:
        """The account's live links carrying one of ``marks`` (None: links with no mark),
        oldest first."""
        key = account_key(account)
        condition, params = _active(now)
        known = [mark for mark in marks if mark is not None]
        clauses = []
        if known:
            clauses.append("password_mark IN (" + ", ".join("?" for _ in known) + ")")
        if None in marks:
            clauses.append("password_mark IS NULL")
        if not clauses:
            return []

        def select(conn: Conn) -> list[LinkRecord]:
            rows = conn.all(
                f"SELECT * FROM links WHERE account = ? AND {condition} "  # noqa: S608
                f"AND ({' OR '.join(clauses)}) "
                f"ORDER BY created, {conn.dialect.insertion_order}",
                (key, *params, *known),
            )
            return [_record(row) for row in rows]

        return await self._db.run(select)

    async def list(self, account: str, *, limit: int = 50, offset: int = 0) -> list[LinkRecord]:
        """The account's links, newest first."""
        key = account_key(account)
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)

        def select(conn: Conn) -> list[LinkRecord]:
            rows = conn.all(
                "SELECT * FROM links WHERE account = ? "  # noqa: S608 - a fixed column name
                f"ORDER BY created DESC, {conn.dialect.insertion_order} DESC LIMIT ? OFFSET ?",
                (key, limit, offset),
            )
            return [_record(row) for row in rows]

        return await self._db.run(select)

    async def count(self, account: str) -> int:
        key = account_key(account)

        def select(conn: Conn) -> int:
            return int(conn.value("SELECT count(*) AS n FROM links WHERE account = ?", (key,)))

        return await self._db.run(select)

    async def revoke(self, account: str, link_id: str, *, now: int | None = None) -> bool:
        """Revoke one of the account's links; False if it has no such (unrevoked) link."""
        key = account_key(account)
        at = int(time.time() if now is None else now)

        def update(conn: Conn) -> bool:
            cursor = conn.execute(
                "UPDATE links SET revoked_at = ? "
                "WHERE link_id = ? AND account = ? AND revoked_at IS NULL",
                (at, link_id, key),
            )
            return cursor.rowcount == 1

        return await self._db.run(update)

    async def revoke_many(self, account: str, link_ids: Sequence[str], *, now: int) -> int:
        """Revoke several of the account's links at once; returns how many were live."""
        key = account_key(account)
        if not link_ids:
            return 0

        def update(conn: Conn) -> int:
            marks = ", ".join("?" for _ in link_ids)
            cursor = conn.execute(
                "UPDATE links SET revoked_at = ? "  # noqa: S608 - placeholders only
                f"WHERE account = ? AND revoked_at IS NULL AND link_id IN ({marks})",
                (int(now), key, *link_ids),
            )
            return cursor.rowcount

        return await self._db.run(update)

    async def restore(self, account: str, link_id: str, *, revoked_since: int) -> bool:
        """Undo the revocation of one link, if it was revoked at ``revoked_since`` or later
        and no revoke-all cut-off covers it; False otherwise (nothing changes)."""
        key = account_key(account)

        def update(conn: Conn) -> bool:
            cursor = conn.execute(
                "UPDATE links SET revoked_at = NULL "
                "WHERE link_id = ? AND account = ? AND revoked_at >= ? AND NOT EXISTS "
                "(SELECT 1 FROM link_cutoffs c WHERE c.account = links.account "
                "AND links.created < c.revoked_before)",
                (link_id, key, int(revoked_since)),
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

        def update(conn: Conn) -> int:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO link_cutoffs (account, revoked_before) VALUES (?, ?) "  # noqa: S608
                    "ON CONFLICT (account) DO UPDATE "
                    f"SET revoked_before = {conn.dialect.greatest}"
                    "(link_cutoffs.revoked_before, excluded.revoked_before)",
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

        def select(conn: Conn) -> int | None:
            value = conn.value("SELECT revoked_before FROM link_cutoffs WHERE account = ?", (key,))
            return None if value is None else int(value)

        return await self._db.run(select)

    async def is_revoked(self, link_id: str, account: str, issued: int) -> bool:
        """True if this link id was revoked, or the account revoked all links issued before it."""
        key = account_key(account)

        def select(conn: Conn) -> bool:
            return bool(
                conn.value(
                    "SELECT (EXISTS (SELECT 1 FROM links WHERE link_id = ? AND account = ? "
                    "AND revoked_at IS NOT NULL) OR EXISTS (SELECT 1 FROM link_cutoffs "
                    "WHERE account = ? AND ? < revoked_before)) AS revoked",
                    (link_id, key, key, int(issued)),
                )
            )

        return await self._db.run(select)

    async def record_open(self, link_id: str, now: int) -> bool:
        """Count one opening of a registered link; False if the registry does not know it."""

        def update(conn: Conn) -> bool:
            cursor = conn.execute(
                "UPDATE links SET opens = opens + 1, "  # noqa: S608 - a fixed function name
                f"last_opened = {conn.dialect.greatest}(coalesce(last_opened, 0), ?) "
                "WHERE link_id = ?",
                (int(now), link_id),
            )
            return cursor.rowcount == 1

        return await self._db.run(update)


__all__ = ["LinkRecord", "LinkRegistry", "LinkStatus", "MintedBy", "new_link_id"]
