"""The bot's durable mail spool: every accepted message, its processing state, its reply.

A message is written here (committed durably, see :mod:`permalink.db`) before the SMTP
listener answers ``250``, so an accepted message survives any crash. It is filed under
the account whose request address it was sent to, decided when it is accepted. Each row
moves through these states::

    queued --claim_next--> working --done--> done
                             |  \\--park---> parked   (not retried unless requeued)
                             \\--retry--> retry --(next_attempt_at passes)--> working

Leases
------
Any number of bot workers, in any number of processes, take work from one spool.
``claim_next`` hands the oldest due message to one worker with a *lease*: the row is
``working``, names its owner, and is the owner's until ``lease_until``. The owner renews
the lease while it works (:meth:`Spool.renew`); every state change it makes names it, and
is refused (:class:`LeaseLost`) once another worker holds the row. A worker that dies
stops renewing: when its lease runs out the row is due again and another worker takes
it. On PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``, so workers never wait on each
other; on SQLite the file's write lock serialises claims.

Exactly one reply per request
-----------------------------
The ``spool_reply`` table records the sending side. The worker follows this order:

1. build the reply, with a Message-ID fixed now;
2. ``record_reply(id, message_id, "sending")`` (durable);
3. hand the reply to the relay;
4. ``record_reply(id, message_id, "sent")`` (durable), then ``done(id)``.

On a re-run of the same spool row (after a crash, a lost lease, or a retry) the worker
first asks ``reply_state(id)``: ``"sent"`` means the reply left already, so it only marks
the row done; ``"sending"`` means a previous attempt reached step 3 but not step 4, so it
sends again *reusing the recorded Message-ID*. A crash anywhere before step 3 sends
nothing; a crash after step 4 sends nothing again. The one window left is a kill after the
relay has answered ``250`` to step 3 and before step 4 is committed: that reply goes out
twice, both copies with the same Message-ID, which lets the recipient's mail client
collapse them. No SMTP relay offers a way to close that window (there is no two-phase
commit in SMTP).

Times are UNIX seconds (``float``). ``list`` never loads message bodies unless asked.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from permalink.db import Conflict, Conn, Database, Row, transaction

State = Literal["queued", "working", "done", "parked", "retry"]
ReplyState = Literal["sending", "sent"]

STATES: tuple[State, ...] = get_args(State)
REPLY_STATES: tuple[ReplyState, ...] = get_args(ReplyState)

#: How long a claim holds a message before another worker may take it (renewed while
#: the worker is alive, so only a dead or frozen worker loses one).
DEFAULT_LEASE_S: Final = 60.0

_META_COLUMNS = (
    "id, received_at, peer, mail_from, rcpt_tos, size, message_id, state, attempts, "
    "reason, next_attempt_at, updated_at, account, lease_owner, lease_until"
)
# Due: queued, a retry whose time came, or work whose owner's lease ran out (a legacy
# row left working before leases existed has none, and is due too).
_DUE = (
    "(state = 'queued' OR (state = 'retry' AND next_attempt_at <= ?)"
    " OR (state = 'working' AND (lease_until IS NULL OR lease_until < ?)))"
)


# A later copy of the row ``spool`` (in an UPDATE or a join): same account, same non-empty
# Message-ID, received after it, and not parked.
_LATER_COPY = (
    "SELECT 1 FROM spool AS later WHERE later.account = spool.account"
    " AND later.message_id = spool.message_id AND later.message_id != ''"
    " AND later.id > spool.id AND later.state != 'parked'"
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
    account: str = ""
    lease_owner: str = ""
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class SpooledMessage(SpoolEntry):
    """A spooled message with the raw bytes exactly as received after DATA."""

    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    spool_id: int
    reply_message_id: str
    state: ReplyState
    updated_at: float


class UnknownSpoolId(LookupError):
    """A state change named a spool row that does not exist."""


class LeaseLost(RuntimeError):
    """Another worker holds this message now: the one that lost it must drop it."""


def _fields(row: Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
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
        "account": row["account"],
        "lease_owner": row["lease_owner"],
        "lease_until": row["lease_until"],
    }


def _entry(row: Row) -> SpoolEntry:
    return SpoolEntry(**_fields(row))


def _message(row: Row) -> SpooledMessage:
    return SpooledMessage(**_fields(row), raw=bytes(row["raw"]))


def insert_message(
    conn: Conn,
    now: float,
    *,
    peer: str,
    mail_from: str,
    rcpt_tos: Iterable[str],
    raw: bytes,
    message_id: str = "",
    account: str = "",
) -> int:
    """Queue one accepted message on ``conn``; returns its id. For a door that must spool
    a message in the same transaction as its own record of it (:mod:`permalink.mailboxes`);
    everyone else calls :meth:`Spool.enqueue`."""
    return int(
        conn.value(
            "INSERT INTO spool (received_at, peer, mail_from, rcpt_tos, raw, size,"
            " message_id, state, updated_at, account)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?) RETURNING id",
            (
                now,
                peer,
                mail_from,
                json.dumps(list(rcpt_tos)),
                raw,
                len(raw),
                message_id,
                now,
                account,
            ),
        )
    )


class Spool:
    """The spool tables of one :class:`~permalink.db.Database`."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("a spool lease must last longer than zero seconds")
        self._db = db
        self._clock = clock
        self.lease_s = lease_s

    async def enqueue(
        self,
        *,
        peer: str,
        mail_from: str,
        rcpt_tos: Iterable[str],
        raw: bytes,
        message_id: str = "",
        account: str = "",
    ) -> int:
        """Store an accepted message durably; returns its id (ids grow with arrival)."""
        now = self._clock()
        rcpts = list(rcpt_tos)

        def insert(conn: Conn) -> int:
            return insert_message(
                conn,
                now,
                peer=peer,
                mail_from=mail_from,
                rcpt_tos=rcpts,
                raw=raw,
                message_id=message_id,
                account=account,
            )

        return await self._db.run(insert)

    async def claim_next(self, owner: str, now: float | None = None) -> SpooledMessage | None:
        """Take the oldest due message for ``owner``: it becomes ``working`` under a lease,
        with one more attempt, in one transaction. None when nothing is due."""
        at = self._clock() if now is None else now
        until = at + self.lease_s

        def claim(conn: Conn) -> SpooledMessage | None:
            skip_locked = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
            with transaction(conn):
                row = conn.one(
                    f"SELECT id FROM spool WHERE {_DUE} ORDER BY id LIMIT 1{skip_locked}",  # noqa: S608
                    (at, at),
                )
                if row is None:
                    return None
                claimed = conn.one(
                    "UPDATE spool SET state = 'working', attempts = attempts + 1,"
                    " next_attempt_at = NULL, lease_owner = ?, lease_until = ?, updated_at = ?"
                    " WHERE id = ? RETURNING *",
                    (owner, until, at, row["id"]),
                )
                assert claimed is not None
                return _message(claimed)

        return await self._db.run(claim)

    async def renew(self, spool_id: int, owner: str) -> None:
        """Extend ``owner``'s lease on a message it is working on; LeaseLost if it is not
        ``owner``'s any more."""
        now = self._clock()

        def update(conn: Conn) -> int:
            return conn.execute(
                "UPDATE spool SET lease_until = ? WHERE id = ? AND state = 'working'"
                " AND lease_owner = ?",
                (now + self.lease_s, spool_id, owner),
            ).rowcount

        if await self._db.run(update) == 0:
            raise LeaseLost(f"spooled message {spool_id} is no longer held by this worker")

    async def release(self, spool_id: int, owner: str) -> None:
        """Give a message back at once (a worker stopping mid-way), so another may take it
        without waiting for the lease to run out; a no-op if it is not ``owner``'s."""

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE spool SET lease_until = NULL, reason = 'interrupted; processing again'"
                " WHERE id = ? AND state = 'working' AND lease_owner = ?",
                (spool_id, owner),
            )

        await self._db.run(update)

    async def done(self, spool_id: int, *, owner: str | None = None) -> None:
        await self._set_state(spool_id, "done", "", None, owner)

    async def park(self, spool_id: int, reason: str, *, owner: str | None = None) -> None:
        """Stop processing this message, keeping it and why (until someone requeues it)."""
        await self._set_state(spool_id, "parked", reason, None, owner)

    async def retry(
        self, spool_id: int, reason: str, next_attempt_at: float, *, owner: str | None = None
    ) -> None:
        """Try this message again once ``next_attempt_at`` has passed."""
        await self._set_state(spool_id, "retry", reason, next_attempt_at, owner)

    async def _set_state(
        self,
        spool_id: int,
        state: State,
        reason: str,
        next_attempt_at: float | None,
        owner: str | None,
    ) -> None:
        now = self._clock()
        sql = (
            "UPDATE spool SET state = ?, reason = ?, next_attempt_at = ?, updated_at = ?,"
            " lease_owner = '', lease_until = NULL WHERE id = ?"
        )
        params: tuple[object, ...] = (state, reason, next_attempt_at, now, spool_id)
        if owner is not None:
            sql += " AND state = 'working' AND lease_owner = ?"
            params += (owner,)

        def update(conn: Conn) -> int:
            return conn.execute(sql, params).rowcount

        if await self._db.run(update) == 0:
            if owner is not None and await self.get(spool_id) is not None:
                raise LeaseLost(f"spooled message {spool_id} is no longer held by this worker")
            raise UnknownSpoolId(f"no spooled message with id {spool_id}")

    async def requeue(
        self, spool_id: int, *, account: str | None = None, reason: str = "requeued by hand"
    ) -> bool:
        """Put a parked message back in the queue (with a fresh count of attempts).

        False if there is no such parked message (of ``account``, when given), or if a
        later copy of it (the same Message-ID to the same account) was taken instead
        (:meth:`later_copy`): answering this one too would answer the request twice.
        """
        now = self._clock()
        # A fixed subquery; every value is a parameter.
        sql = (
            "UPDATE spool SET state = 'queued', attempts = 0, reason = ?,"  # noqa: S608
            " next_attempt_at = NULL, updated_at = ? WHERE id = ? AND state = 'parked'"
            f" AND NOT EXISTS ({_LATER_COPY})"
        )
        params: tuple[object, ...] = (reason, now, spool_id)
        if account is not None:
            sql += " AND account = ?"
            params += (account,)

        def update(conn: Conn) -> int:
            return conn.execute(sql, params).rowcount

        return await self._db.run(update) == 1

    async def later_copy(self, spool_id: int) -> int | None:
        """The id of a later message with this one's Message-ID, to the same account, that
        was not parked (answered, ignored or in hand), if there is one."""

        def select(conn: Conn) -> int | None:
            value = conn.value(
                "SELECT later.id FROM spool JOIN spool AS later"
                " ON later.account = spool.account AND later.message_id = spool.message_id"
                " WHERE spool.id = ? AND later.message_id != '' AND later.id > spool.id"
                " AND later.state != 'parked' ORDER BY later.id LIMIT 1",
                (spool_id,),
            )
            return None if value is None else int(value)

        return await self._db.run(select)

    async def requeue_parked(self, *, account: str | None = None) -> builtins.list[int]:
        """Put every parked message (of ``account``, when given) back in the queue."""
        entries = await self.list(("parked",), limit=100_000, account=account)
        requeued = []
        for entry in entries:
            if await self.requeue(entry.id, account=account):
                requeued.append(entry.id)
        return sorted(requeued)

    async def seen_message_id(
        self, message_id: str, *, account: str = "", before_id: int | None = None
    ) -> bool:
        """Whether an earlier message to the same account carries this Message-ID.

        Parked messages do not count: they got no reply, so a redelivery deserves one.
        An empty Message-ID is never a duplicate of anything.
        """
        if not message_id:
            return False
        sql = (
            "SELECT 1 AS seen FROM spool WHERE message_id = ? AND account = ? AND state != 'parked'"
        )
        params: tuple[object, ...] = (message_id, account)
        if before_id is not None:
            sql += " AND id < ?"
            params += (before_id,)

        def exists(conn: Conn) -> bool:
            return conn.one(sql + " LIMIT 1", params) is not None

        return await self._db.run(exists)

    async def next_due_at(self) -> float | None:
        """When the earliest retry or held lease falls due, so a worker can sleep until then."""

        def earliest(conn: Conn) -> float | None:
            value = conn.value(
                "SELECT min(at) AS at FROM (SELECT next_attempt_at AS at FROM spool"
                " WHERE state = 'retry' UNION ALL SELECT lease_until AS at FROM spool"
                " WHERE state = 'working' AND lease_until IS NOT NULL) AS due"
            )
            return None if value is None else float(value)

        return await self._db.run(earliest)

    async def prune(self, settled_before: float) -> int:
        """Forget messages settled (done or parked) before ``settled_before``, with their
        bodies and reply records; returns how many. Duplicate detection reaches back only
        as far as what is kept."""

        def delete(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM spool WHERE state IN ('done', 'parked') AND updated_at < ?",
                (settled_before,),
            ).rowcount

        return await self._db.run(delete)

    async def counts(self, *, account: str | None = None) -> dict[State, int]:
        """How many messages are in each state (every state present, zero included)."""

        def count(conn: Conn) -> dict[State, int]:
            if account is None:
                rows = conn.all("SELECT state, count(*) AS n FROM spool GROUP BY state")
            else:
                rows = conn.all(
                    "SELECT state, count(*) AS n FROM spool WHERE account = ? GROUP BY state",
                    (account,),
                )
            found = {row["state"]: int(row["n"]) for row in rows}
            return {state: found.get(state, 0) for state in STATES}

        return await self._db.run(count)

    async def get(self, spool_id: int) -> SpooledMessage | None:
        def fetch(conn: Conn) -> SpooledMessage | None:
            row = conn.one("SELECT * FROM spool WHERE id = ?", (spool_id,))
            return None if row is None else _message(row)

        return await self._db.run(fetch)

    async def record_reply(self, spool_id: int, reply_message_id: str, state: ReplyState) -> None:
        """Durably note how far the reply to ``spool_id`` got (see the module docstring)."""
        if state not in REPLY_STATES:
            raise ValueError(f"reply state must be one of {REPLY_STATES}, not {state!r}")
        now = self._clock()

        def upsert(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO spool_reply (spool_id, reply_message_id, state, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (spool_id) DO UPDATE SET"
                " reply_message_id = excluded.reply_message_id, state = excluded.state,"
                " updated_at = excluded.updated_at",
                (spool_id, reply_message_id, state, now),
            )

        try:
            await self._db.run(upsert)
        except Conflict as exc:
            raise UnknownSpoolId(f"no spooled message with id {spool_id}") from exc

    async def reply_state(self, spool_id: int) -> ReplyRecord | None:
        def fetch(conn: Conn) -> ReplyRecord | None:
            row = conn.one(
                "SELECT spool_id, reply_message_id, state, updated_at FROM spool_reply"
                " WHERE spool_id = ?",
                (spool_id,),
            )
            if row is None:
                return None
            return ReplyRecord(
                spool_id=int(row["spool_id"]),
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
        account: str | None = None,
        with_raw: bool = False,
    ) -> builtins.list[SpoolEntry]:
        """Newest first, ``limit`` rows with ``id < before_id`` (for paging), of one
        ``account`` when given.

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
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))
        build = _message if with_raw else _entry

        def select(conn: Conn) -> builtins.list[SpoolEntry]:
            return [build(row) for row in conn.all(sql, params)]

        return await self._db.run(select)


__all__ = [
    "DEFAULT_LEASE_S",
    "REPLY_STATES",
    "STATES",
    "LeaseLost",
    "ReplyRecord",
    "ReplyState",
    "Spool",
    "SpoolEntry",
    "SpooledMessage",
    "State",
    "UnknownSpoolId",
    "insert_message",
]
