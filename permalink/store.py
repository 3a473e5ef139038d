"""The Store seam: every piece of state the product keeps, behind one object.

Links and revocations (:mod:`permalink.registry`), accounts and their sealed secrets
(:mod:`permalink.accounts`), the mail spool with its leases (:mod:`permalink.spool`),
activity (:mod:`permalink.activity`), rate limits and throttles (:mod:`permalink.limits`),
sign-in sessions (:mod:`permalink.sessions`), the domains each account has proved
(:mod:`permalink.domains`), the IMAP mailboxes the bot reads (:mod:`permalink.mailboxes`),
the settings forms' submissions (:mod:`permalink.submissions`), password-change re-issues
(:mod:`permalink.reissues`), what a business tells its clients (payment instructions,
logo, languages: :mod:`permalink.business`) and, across them, every sealed secret
(:mod:`permalink.sealed`). :class:`SqlStore` keeps them in a
:class:`~permalink.db.Database` — the SQLite file in the state directory by default, or
PostgreSQL so several processes share one state. Nothing a request needs lives only in
one process's memory; callers see the tables, never a driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from permalink.accounts import AccountSettings
from permalink.activity import ActivityLog
from permalink.business import BusinessProfiles
from permalink.db import Database
from permalink.domains import DomainProofs
from permalink.keyring import Keyring, KeyringSource
from permalink.limits import RateLimiter, Throttles
from permalink.mailboxes import Mailboxes
from permalink.registry import LinkRegistry
from permalink.reissues import Reissues
from permalink.sealed import SealedSecrets
from permalink.sessions import SessionRecords
from permalink.spool import DEFAULT_LEASE_S, Spool
from permalink.submissions import FormSubmissions


class Store(Protocol):
    """What the core keeps between requests, in whichever database the root chose."""

    @property
    def links(self) -> LinkRegistry: ...
    @property
    def accounts(self) -> AccountSettings: ...
    @property
    def spool(self) -> Spool: ...
    @property
    def activity(self) -> ActivityLog: ...
    @property
    def limits(self) -> RateLimiter: ...
    @property
    def throttles(self) -> Throttles: ...
    @property
    def sessions(self) -> SessionRecords: ...
    @property
    def domains(self) -> DomainProofs: ...
    @property
    def mailboxes(self) -> Mailboxes: ...
    @property
    def submissions(self) -> FormSubmissions: ...
    @property
    def reissues(self) -> Reissues: ...
    @property
    def secrets(self) -> SealedSecrets: ...
    @property
    def business(self) -> BusinessProfiles: ...
    @property
    def description(self) -> str: ...

    def close(self) -> None: ...


class SqlStore:
    """The store's tables over one database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring | KeyringSource,
        *,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.db = db
        self.links = LinkRegistry(db)
        self.accounts = AccountSettings(db, keyring)
        self.spool = Spool(db, clock=clock, lease_s=lease_s)
        self.activity = ActivityLog(db)
        self.limits = RateLimiter(db)
        self.throttles = Throttles(db)
        self.sessions = SessionRecords(db)
        self.domains = DomainProofs(db, clock=clock)
        self.mailboxes = Mailboxes(db, keyring, clock=clock)
        self.submissions = FormSubmissions(db)
        self.reissues = Reissues(db, clock=clock)
        self.secrets = SealedSecrets(db, keyring)
        self.business = BusinessProfiles(db, clock)

    @property
    def description(self) -> str:
        return self.db.description

    def close(self) -> None:
        self.db.close()


__all__ = ["SqlStore", "Store"]
