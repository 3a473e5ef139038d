"""The bot's durable mail spool: every accepted message, its processing state, its reply.

A message is written here (and committed with ``synchronous=FULL``, see
:mod:`permalink.db`) before the SMTP listener answers ``250``, so an accepted message
survives any crash. Each row moves through these states::

    queued --claim_next--> working --done--> done
                             |  \\--park---> parked   (never retried; reason kept)
                             \\--retry--> retry --(next_attempt_at passes)--> working

``requeue_working`` runs at start-up: a row still ``working`` belongs to a process that
died mid-way, so it goes back to ``queued`` and is processed again.

Exactly one reply per request
-----------------------------
The ``spool_reply`` table records the sending side. The worker follows this order:

1. build the reply, with a Message-ID fixed now;
2. ``record_reply(id, message_id, "sending")`` (durable);
3. hand the reply to the relay;
4. ``record_reply(id, message_id, "sent")`` (durable), then ``done(id)``.

On a re-run of the same spool row (after a crash, or a retry) the worker first asks
``reply_state(id)``: ``"sent"`` means the reply left already, so it only marks the row
done; ``"sending"`` means a previous attempt reached step 3 but not step 4, so it sends
again *reusing the recorded Message-ID*. A crash anywhere before step 3 sends nothing;
a crash after step 4 sends nothing again. The one window left is a kill after the relay
has answered ``250`` to step 3 and before step 4 is committed: that reply goes out twice,
both copies with the same Message-ID, which lets the recipient's mail client collapse them.
No SMTP relay offers a way to close that window (there is no two-phase commit in SMTP).

Times are UNIX seconds (``float``). ``list`` never loads message bodies unless asked.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from permalink.db import Database, transaction

State = Literal["queued", "working", "done", "parked", "retry"]
ReplyState = Literal["sending", "sent"]

STATES: tuple[State, ...] = get_args(State)
REPLY_STATES: tuple[ReplyState, ...] = get_args(ReplyState)

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    peer TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_tos TEXT NOT NULL,
    raw BLOB NOT NULL,
    size INTEGER NOT NULL,
    message_id TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'working', 'done', 'parked', 'retry')),
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    next_attempt_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_by_state ON spool (state, id);
CREATE INDEX IF NOT EXISTS spool_by_message_id ON spool (message_id) WHERE message_id != '';
CREATE TABLE IF NOT EXISTS spool_reply (
    spool_id INTEGER PRIMARY KEY REFERENCES spool (id) ON DELETE CASCADE,
    reply_message_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sending', 'sent')),
    updated_at REAL NOT NULL
);
"""

_META_COLUMNS = (
    "id, received_at, peer, mail_from, rcpt_tos, size, message_id, state, attempts, "
    "reason, next_attempt_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled message without its body (what the settings page lists)."""

    id: int
    received_at: float
    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    size: int
    message_id: str
    state: State
    attempts: int
    reason: str
    next_attempt_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class SpooledMessage(SpoolEntry):
    """A spooled message with the raw bytes exactly as received after DATA."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    spool_id: int
    reply_message_id: str
    state: ReplyState
    updated_at: float


class UnknownSpoolId(LookupError):
    """A state change named a spool row that does not exist."""


def _fields(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "received_at": row["received_at"],
        "peer": row["peer"],
        "mail_from": row["mail_from"],
        "rcpt_tos": tuple(json.loads(row["rcpt_tos"])),
        "size": row["size"],
        "message_id": row["message_id"],
        "state": row["state"],
        "attempts": row["attempts"],
        "reason": row["reason"],
        "next_attempt_at": row["next_attempt_at"],
        "updated_at": row["updated_at"],
    }


def _entry(row: sqlite3.Row) -> SpoolEntry:
    return SpoolEntry(**_fields(row))


def _message(row: sqlite3.Row) -> SpooledMessage:
    return SpooledMessage(**_fields(row), raw=bytes(row["raw"]))


class Spool:
    """The spool tables of one :class:`~permalink.db.Database`."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.ensure(SCHEMA)

    async def enqueue(
        self,
        *,
        peer: str,
        mail_from: str,
        rcpt_tos: Iterable[str],
        raw: bytes,
        message_id: str = "",
    ) -> int:
        """Store an accepted message durably; returns its id (ids grow with arrival)."""
        now = self._clock()
        rcpts = json.dumps(list(rcpt_tos))

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO spool (received_at, peer, mail_from, rcpt_tos, raw, size,"
                " message_id, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                (now, peer, mail_from, rcpts, raw, len(raw), message_id, now),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._db.run(insert)

    async def claim_next(self, now: float | None = None) -> SpooledMessage | None:
        """Take the oldest message that is due: ``queued``, or ``retry`` whose time came.

        The row becomes ``working`` with one more attempt, in one transaction.
        """
        at = self._clock() if now is None else now

        def claim(conn: sqlite3.Connection) -> SpooledMessage | None:
            with transaction(conn):
                row = conn.execute(
                    "SELECT id FROM spool WHERE state = 'queued'"
                    " OR (state = 'retry' AND next_attempt_at <= ?) ORDER BY id LIMIT 1",
                    (at,),
                ).fetchone()
                if row is None:
                    return None
                conn.execute(
                    "UPDATE spool SET state = 'working', attempts = attempts + 1,"
                    " next_attempt_at = NULL, updated_at = ? WHERE id = ?",
                    (at, row["id"]),
                )
                claimed = conn.execute("SELECT * FROM spool WHERE id = ?", (row["id"],))
                return _message(claimed.fetchone())

        return await self._db.run(claim)

    async def done(self, spool_id: int) -> None:
        await self._set_state(spool_id, "done", "", None)

    async def park(self, spool_id: int, reason: str) -> None:
        """Stop processing this message for good, keeping it and why."""
        await self._set_state(spool_id, "parked", reason, None)

    async def retry(self, spool_id: int, reason: str, next_attempt_at: float) -> None:
        """Try this message again once ``next_attempt_at`` has passed."""
        await self._set_state(spool_id, "retry", reason, next_attempt_at)

    async def _set_state(
        self, spool_id: int, state: State, reason: str, next_attempt_at: float | None
    ) -> None:
        now = self._clock()

        def update(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE spool SET state = ?, reason = ?, next_attempt_at = ?, updated_at = ?"
                " WHERE id = ?",
                (state, reason, next_attempt_at, now, spool_id),
            ).rowcount

        if await self._db.run(update) == 0:
            raise UnknownSpoolId(f"no spooled message with id {spool_id}")

    async def requeue_working(self) -> int:
        """Start-up: messages a dead process left ``working`` go back to ``queued``."""
        now = self._clock()

        def requeue(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE spool SET state = 'queued', reason = 'interrupted; processing again',"
                " updated_at = ? WHERE state = 'working'",
                (now,),
            ).rowcount

        return await self._db.run(requeue)

    async def seen_message_id(self, message_id: str, *, before_id: int | None = None) -> bool:
        """Whether an earlier spooled message carries this Message-ID.

        Parked messages do not count: they got no reply, so a redelivery deserves one.
        An empty Message-ID is never a duplicate of anything.
        """
        if not message_id:
            return False
        sql = "SELECT 1 FROM spool WHERE message_id = ? AND state != 'parked'"
        params: tuple[object, ...] = (message_id,)
        if before_id is not None:
            sql += " AND id < ?"
            params += (before_id,)

        def exists(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql + " LIMIT 1", params).fetchone() is not None

        return await self._db.run(exists)

    async def next_retry_at(self) -> float | None:
        """When the earliest waiting retry falls due, so a worker can sleep until then."""

        def earliest(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(next_attempt_at) FROM spool WHERE state = 'retry'"
            ).fetchone()
            value: float | None = row[0]
            return value

        return await self._db.run(earliest)

    async def prune(self, settled_before: float) -> int:
        """Forget messages settled (done or parked) before ``settled_before``, with their
        bodies and reply records; returns how many. Duplicate detection reaches back only
        as far as what is kept."""

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM spool WHERE state IN ('done', 'parked') AND updated_at < ?",
                (settled_before,),
            ).rowcount

        return await self._db.run(delete)

    async def counts(self) -> dict[State, int]:
        """How many messages are in each state (every state present, zero included)."""

        def count(conn: sqlite3.Connection) -> dict[State, int]:
            found = dict(conn.execute("SELECT state, COUNT(*) FROM spool GROUP BY state"))
            return {state: int(found.get(state, 0)) for state in STATES}

        return await self._db.run(count)

    async def get(self, spool_id: int) -> SpooledMessage | None:
        def fetch(conn: sqlite3.Connection) -> SpooledMessage | None:
            row = conn.execute("SELECT * FROM spool WHERE id = ?", (spool_id,)).fetchone()
            return None if row is None else _message(row)

        return await self._db.run(fetch)

    async def record_reply(self, spool_id: int, reply_message_id: str, state: ReplyState) -> None:
        """Durably note how far the reply to ``spool_id`` got (see the module docstring)."""
        if state not in REPLY_STATES:
            raise ValueError(f"reply state must be one of {REPLY_STATES}, not {state!r}")
        now = self._clock()

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO spool_reply (spool_id, reply_message_id, state, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (spool_id) DO UPDATE SET"
                " reply_message_id = excluded.reply_message_id, state = excluded.state,"
                " updated_at = excluded.updated_at",
                (spool_id, reply_message_id, state, now),
            )

        try:
            await self._db.run(upsert)
        except sqlite3.IntegrityError as exc:
            raise UnknownSpoolId(f"no spooled message with id {spool_id}") from exc

    async def reply_state(self, spool_id: int) -> ReplyRecord | None:
        def fetch(conn: sqlite3.Connection) -> ReplyRecord | None:
            row = conn.execute(
                "SELECT spool_id, reply_message_id, state, updated_at FROM spool_reply"
                " WHERE spool_id = ?",
                (spool_id,),
            ).fetchone()
            if row is None:
                return None
            return ReplyRecord(
                spool_id=row["spool_id"],
                reply_message_id=row["reply_message_id"],
                state=row["state"],
                updated_at=row["updated_at"],
            )

        return await self._db.run(fetch)

    async def list(
        self,
        states: Iterable[State] = STATES,
        limit: int = 50,
        before_id: int | None = None,
        *,
        with_raw: bool = False,
    ) -> builtins.list[SpoolEntry]:
        """Newest first, ``limit`` rows with ``id < before_id`` (for paging).

        Rows are :class:`SpooledMessage` (with ``raw``) only when ``with_raw`` is set.
        """
        wanted = builtins.list(states)
        unknown = set(wanted) - set(STATES)
        if unknown:
            raise ValueError(f"unknown spool states: {sorted(unknown)}")
        if not wanted:
            return []
        columns = "*" if with_raw else _META_COLUMNS
        marks = ", ".join("?" for _ in wanted)
        sql = f"SELECT {columns} FROM spool WHERE state IN ({marks})"  # noqa: S608 (only '?')
        params: builtins.list[object] = [*wanted]
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))
        build = _message if with_raw else _entry

        def select(conn: sqlite3.Connection) -> builtins.list[SpoolEntry]:
            return [build(row) for row in conn.execute(sql, params)]

        return await self._db.run(select)


__all__ = [
    "REPLY_STATES",
    "SCHEMA",
    "STATES",
    "ReplyRecord",
    "ReplyState",
    "Spool",
    "SpoolEntry",
    "SpooledMessage",
    "State",
    "UnknownSpoolId",
]
