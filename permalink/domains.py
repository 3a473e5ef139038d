"""Which mail domains each account has proved it controls.

A request address routes a firm's clients' mail to an account, and a reply-from address
speaks for a firm, so neither may name a domain the account has not proved is its own.
Proof is one of two things, recorded per account and domain:

* the accountant publishes a DNS TXT record the settings page shows
  (:func:`record_name` holding :func:`record_value` with the account's random token for
  the domain), and the product sees it (:mod:`permalink.dnsproof`);
* the operator grants the domain (``kashflow-permalink accounts allow-domain``), for a
  self-hosted server whose operator is the firm.

Two accounts may each prove the same domain (two KashFlow accounts of one firm); each
request address still belongs to one account at a time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from permalink.accounts import account_key
from permalink.db import Conn, Database, Row

How = Literal["dns", "operator"]

#: The label under the domain where the proof record lives.
RECORD_LABEL: Final = "_kashflow-permalink"
#: What the TXT record's text starts with; the account's token follows.
RECORD_PREFIX: Final = "kashflow-permalink-verify="
_TOKEN_BYTES: Final = 18


def domain_of(address: str) -> str:
    """The domain of an email address, lower-cased ("" when there is none)."""
    _, at, domain = address.strip().rpartition("@")
    return domain.strip().rstrip(".").lower() if at else ""


def normal_domain(domain: str) -> str:
    """A domain as the table keys it; ValueError for something that is not one."""
    text = domain.strip().rstrip(".").lower()
    labels = text.split(".")
    if (
        len(labels) < 2
        or len(text) > 253
        or not all(
            0 < len(label) <= 63
            and label.replace("-", "").isalnum()
            and label.isascii()
            and not label.startswith("-")
            and not label.endswith("-")
            for label in labels
        )
    ):
        raise ValueError(f"{domain!r} is not a domain name such as example.co.uk")
    return text


def record_name(domain: str) -> str:
    return f"{RECORD_LABEL}.{normal_domain(domain)}"


def record_value(token: str) -> str:
    return RECORD_PREFIX + token


@dataclass(frozen=True, slots=True)
class DomainProof:
    """One account's claim to one domain: the challenge, and whether it is proved."""

    account: str
    domain: str
    token: str
    verified: float | None = None
    how: How | None = None

    @property
    def proved(self) -> bool:
        return self.verified is not None

    @property
    def record_name(self) -> str:
        return record_name(self.domain)

    @property
    def record_value(self) -> str:
        return record_value(self.token)


def _proof(row: Row) -> DomainProof:
    return DomainProof(
        account=row["account"],
        domain=row["domain"],
        token=row["token"],
        verified=row["verified"],
        how=row["how"],
    )


class DomainProofs:
    """The ``account_domains`` table."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def challenge(self, account: str, domain: str) -> DomainProof:
        """The account's proof record for ``domain``, made (with a new token) if new."""
        key, name = account_key(account), normal_domain(domain)
        token, now = secrets.token_urlsafe(_TOKEN_BYTES), self._clock()

        def upsert(conn: Conn) -> DomainProof:
            conn.execute(
                "INSERT INTO account_domains (account, domain, token, created) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (account, domain) DO NOTHING",
                (key, name, token, now),
            )
            row = conn.one(
                "SELECT * FROM account_domains WHERE account = ? AND domain = ?", (key, name)
            )
            assert row is not None
            return _proof(row)

        return await self._db.run(upsert)

    async def get(self, account: str, domain: str) -> DomainProof | None:
        key = account_key(account)
        try:
            name = normal_domain(domain)
        except ValueError:
            return None

        def select(conn: Conn) -> DomainProof | None:
            row = conn.one(
                "SELECT * FROM account_domains WHERE account = ? AND domain = ?", (key, name)
            )
            return None if row is None else _proof(row)

        return await self._db.run(select)

    async def proved(self, account: str, domain: str) -> bool:
        found = await self.get(account, domain)
        return found is not None and found.proved

    async def mark_proved(self, account: str, domain: str, how: How) -> DomainProof:
        """Record that the account controls ``domain`` (seen in DNS, or granted)."""
        await self.challenge(account, domain)
        key, name, now = account_key(account), normal_domain(domain), self._clock()

        def update(conn: Conn) -> DomainProof:
            conn.execute(
                "UPDATE account_domains SET verified = ?, how = ? WHERE account = ? AND domain = ?",
                (now, how, key, name),
            )
            row = conn.one(
                "SELECT * FROM account_domains WHERE account = ? AND domain = ?", (key, name)
            )
            assert row is not None
            return _proof(row)

        return await self._db.run(update)

    async def list(self, account: str) -> list[DomainProof]:
        key = account_key(account)

        def select(conn: Conn) -> list[DomainProof]:
            rows = conn.all(
                "SELECT * FROM account_domains WHERE account = ? ORDER BY domain", (key,)
            )
            return [_proof(row) for row in rows]

        return await self._db.run(select)


__all__ = [
    "RECORD_LABEL",
    "RECORD_PREFIX",
    "DomainProof",
    "DomainProofs",
    "How",
    "domain_of",
    "normal_domain",
    "record_name",
    "record_value",
]
