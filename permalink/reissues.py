"""The state of re-issues: after a KashFlow password change, which customers get new links.

A re-issue is one job per account with one *item* per customer whose links broke. Each
item lists the links to make (a scope and an expiry each, and the broken link ids they
replace) and moves through a small protocol, written down here and followed by
:mod:`permalink.reissue`, so an interrupted job can be taken up again without emailing a
client twice:

1. ``pending``: nothing done yet.
2. ``sending``: the new link ids and the email's Message-ID are chosen and recorded
   *before* anything is minted or sent. Minting those ids is idempotent (an id already in
   the registry is not minted again), so a job resumed here makes the same links and
   sends the same message (same links, same Message-ID) — a client's mail program shows a
   copy that may have left before the interruption as one message.
3. ``done`` (sent, or nothing to send: the detail says why) or ``failed`` (the relay said
   no; trying again resumes at step 2 with the same links and Message-ID).

Only one process works a job at a time: it holds a lease (owner and deadline), renewed at
every item and checked by every write, so a job whose worker died can be resumed by
another once its lease has run out. No token or password is stored: new links are written
again from the registry and the resuming accountant's credentials
(:meth:`permalink.core.Core.url_again`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from permalink.accounts import account_key
from permalink.db import Conn, Database, Row, transaction

ItemState = Literal["pending", "sending", "done", "failed"]
#: Seconds a worker's claim on a job lasts without being renewed.
LEASE_S: Final = 120.0


@dataclass(frozen=True, slots=True)
class PlannedLink:
    """One new link: its scope, its absolute expiry, and the broken links it replaces."""

    scope: str
    expires: int | None
    replaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlannedCustomer:
    code: str
    name: str
    links: tuple[PlannedLink, ...]


@dataclass(frozen=True, slots=True)
class Item:
    position: int
    customer_code: str
    customer_name: str
    links: tuple[PlannedLink, ...]
    state: ItemState
    new_link_ids: tuple[str, ...]
    message_id: str
    emailed_to: str
    detail: str

    @property
    def replaced(self) -> int:
        return sum(len(link.replaces) for link in self.links)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    account: str
    created: float
    finished: float | None
    lease_owner: str
    lease_until: float | None
    items: tuple[Item, ...]
    #: Why the last worker stopped early (KashFlow refused, say), for the page.
    problem: str = ""

    def count(self, *states: ItemState) -> int:
        return sum(1 for item in self.items if item.state in states)

    @property
    def left(self) -> int:
        """Items still to do (pending, or interrupted while sending)."""
        return self.count("pending", "sending")

    def running(self, now: float) -> bool:
        """A worker holds the job now."""
        return self.finished is None and self.lease_until is not None and self.lease_until > now

    def interrupted(self, now: float) -> bool:
        """Unfinished work and nobody on it: the job waits to be resumed."""
        return self.finished is None and not self.running(now)


def _links_json(links: Sequence[PlannedLink]) -> str:
    return json.dumps(
        [{"scope": x.scope, "expires": x.expires, "replaces": list(x.replaces)} for x in links],
        separators=(",", ":"),
    )


def _links(text: str) -> tuple[PlannedLink, ...]:
    return tuple(
        PlannedLink(str(x["scope"]), x["expires"], tuple(x["replaces"])) for x in json.loads(text)
    )


def _item(row: Row) -> Item:
    return Item(
        position=int(row["position"]),
        customer_code=row["customer_code"],
        customer_name=row["customer_name"],
        links=_links(row["plan"]),
        state=row["state"],
        new_link_ids=tuple(row["new_link_ids"].split()),
        message_id=row["message_id"],
        emailed_to=row["emailed_to"],
        detail=row["detail"],
    )


def _job(row: Row, items: list[Row]) -> Job:
    return Job(
        id=row["id"],
        account=row["account"],
        created=float(row["created"]),
        finished=None if row["finished"] is None else float(row["finished"]),
        lease_owner=row["lease_owner"],
        lease_until=None if row["lease_until"] is None else float(row["lease_until"]),
        items=tuple(_item(item) for item in items),
        problem=row["problem"],
    )


_HOLDER = "EXISTS (SELECT 1 FROM reissues WHERE id = ? AND lease_owner = ? AND finished IS NULL)"


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow, or thought dead)."""


class Reissues:
    """Re-issue jobs and their items, per account."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def create(self, account: str, customers: Sequence[PlannedCustomer]) -> str:
        """A new job for ``customers`` (in that order); returns its id."""
        key = account_key(account)
        job_id = secrets.token_urlsafe(12)
        now = self._clock()

        def insert(conn: Conn) -> None:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO reissues (id, account, created) VALUES (?, ?, ?)",
                    (job_id, key, now),
                )
                for position, customer in enumerate(customers):
                    conn.execute(
                        "INSERT INTO reissue_items (reissue_id, position, customer_code, "
                        "customer_name, plan) VALUES (?, ?, ?, ?, ?)",
                        (
                            job_id,
                            position,
                            customer.code,
                            customer.name,
                            _links_json(customer.links),
                        ),
                    )

        await self._db.run(insert)
        return job_id

    async def get(self, account: str, job_id: str) -> Job | None:
        """The account's job with this id, with its items in order."""
        key = account_key(account)

        def select(conn: Conn) -> Job | None:
            row = conn.one("SELECT * FROM reissues WHERE id = ? AND account = ?", (job_id, key))
            if row is None:
                return None
            items = conn.all(
                "SELECT * FROM reissue_items WHERE reissue_id = ? ORDER BY position", (job_id,)
            )
            return _job(row, items)

        return await self._db.run(select)

    async def unfinished(self, account: str) -> str | None:
        """The id of the account's newest job that has work left, if any."""
        key = account_key(account)

        def select(conn: Conn) -> str | None:
            value = conn.value(
                "SELECT id FROM reissues WHERE account = ? AND finished IS NULL "
                "ORDER BY created DESC LIMIT 1",
                (key,),
            )
            return None if value is None else str(value)

        return await self._db.run(select)

    async def take(self, job_id: str, owner: str, *, lease_s: float = LEASE_S) -> bool:
        """Claim the job for ``owner`` unless another live worker holds it."""
        now = self._clock()

        def update(conn: Conn) -> bool:
            return (
                conn.execute(
                    "UPDATE reissues SET lease_owner = ?, lease_until = ?, problem = '' "
                    "WHERE id = ? "
                    "AND finished IS NULL AND (lease_until IS NULL OR lease_until <= ? "
                    "OR lease_owner = ?)",
                    (owner, now + lease_s, job_id, now, owner),
                ).rowcount
                == 1
            )

        return await self._db.run(update)

    async def renew(self, job_id: str, owner: str, *, lease_s: float = LEASE_S) -> None:
        """Extend ``owner``'s lease; :class:`LeaseLost` if it is no longer the holder."""
        now = self._clock()

        def update(conn: Conn) -> int:
            return conn.execute(
                "UPDATE reissues SET lease_until = ? WHERE id = ? AND lease_owner = ? "
                "AND finished IS NULL",
                (now + lease_s, job_id, owner),
            ).rowcount

        if await self._db.run(update) != 1:
            raise LeaseLost(job_id)

    async def sending(
        self,
        job_id: str,
        owner: str,
        position: int,
        *,
        new_link_ids: Sequence[str],
        message_id: str,
    ) -> None:
        """Step 2: the item's new link ids and Message-ID, recorded before anything is made."""
        await self._set(
            job_id,
            owner,
            position,
            "state = 'sending', new_link_ids = ?, message_id = ?",
            (" ".join(new_link_ids), message_id),
        )

    async def settle(
        self,
        job_id: str,
        owner: str,
        position: int,
        state: Literal["done", "failed"],
        *,
        emailed_to: str = "",
        detail: str = "",
    ) -> None:
        """Step 3: the item is done (or its email failed), with what the page shows."""
        await self._set(
            job_id,
            owner,
            position,
            "state = ?, emailed_to = ?, detail = ?",
            (state, emailed_to, detail),
        )

    async def _set(
        self, job_id: str, owner: str, position: int, assignments: str, params: tuple[object, ...]
    ) -> None:
        def update(conn: Conn) -> int:
            return conn.execute(
                f"UPDATE reissue_items SET {assignments} "  # noqa: S608 - fixed text
                f"WHERE reissue_id = ? AND position = ? AND {_HOLDER}",
                (*params, job_id, position, job_id, owner),
            ).rowcount

        if await self._db.run(update) != 1:
            raise LeaseLost(job_id)

    async def retry_failed(self, account: str, job_id: str) -> int:
        """Open a finished job again so its failed items are tried once more."""
        key = account_key(account)

        def update(conn: Conn) -> int:
            with transaction(conn):
                failed = int(
                    conn.value(
                        "SELECT count(*) AS n FROM reissue_items WHERE reissue_id = ? "
                        "AND state = 'failed'",
                        (job_id,),
                    )
                )
                if failed:
                    conn.execute(
                        "UPDATE reissues SET finished = NULL, lease_owner = '', "
                        "lease_until = NULL WHERE id = ? AND account = ?",
                        (job_id, key),
                    )
                return failed

        return await self._db.run(update)

    async def finish(self, job_id: str, owner: str) -> None:
        """Every item is settled: the job is over and its lease let go."""
        now = self._clock()

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE reissues SET finished = ?, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (now, job_id, owner),
            )

        await self._db.run(update)

    async def prune(self, before: float) -> int:
        """Forget jobs finished before ``before`` (with their items); returns how many."""

        def delete(conn: Conn) -> int:
            with transaction(conn):
                conn.execute(
                    "DELETE FROM reissue_items WHERE reissue_id IN "
                    "(SELECT id FROM reissues WHERE finished < ?)",
                    (before,),
                )
                return conn.execute("DELETE FROM reissues WHERE finished < ?", (before,)).rowcount

        return await self._db.run(delete)

    async def release(self, job_id: str, owner: str, *, problem: str = "") -> None:
        """Let go of the lease without finishing (the worker stops; ``problem`` says why)."""

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE reissues SET lease_until = NULL, problem = ? WHERE id = ? "
                "AND lease_owner = ? AND finished IS NULL",
                (problem, job_id, owner),
            )

        await self._db.run(update)


__all__ = [
    "LEASE_S",
    "Item",
    "ItemState",
    "Job",
    "LeaseLost",
    "PlannedCustomer",
    "PlannedLink",
    "Reissues",
]
