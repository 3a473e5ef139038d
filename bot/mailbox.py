"""The bot's IMAP door: requests read from a mailbox into the same spool as SMTP mail.

For a firm whose mail lives at Gmail or Microsoft 365 (no domain to point at a server),
the bot signs in to the request address's mailbox instead. :class:`MailboxDoor` runs in
every bot process; for each account whose bot is on, whose mailbox is configured and
which the operator allows (``ALLOWED_ACCOUNTS``) it takes the mailbox's lease
(:mod:`permalink.mailboxes`), so one process reads it and another takes over if that one
dies, and runs a :class:`MailboxReader` while it holds it.

A reader signs in, opens the folder, and takes each message not yet taken — oldest first,
keyed by UIDVALIDITY and UID, written to the spool in the same transaction as its key
(exactly once, whatever crashes when) — wakes the worker, then moves the message to the
folder for handled mail or flags it handled (``\\Seen`` and ``$KashFlowPermalink``). Then
it waits for new mail with IDLE, or polls when the server has no IDLE, and looks again.
It looks only at messages that arrived in the last :data:`LOOK_BACK_DAYS` days, so
pointing the bot at a mailbox with years of history does not answer all of it.

From there a message is like one the SMTP listener accepted: the worker reads it, the
guards apply (the ``Return-Path`` the receiving server wrote stands for the envelope
sender), and the reply leaves through the account's relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import Final

from bot.imap import HANDLED, Folder, MailboxError, Server, Session, imap_date, open_session
from bot.listener import header_message_id
from permalink.core import Core
from permalink.db import StoreError
from permalink.keyring import SecretUnreadable
from permalink.mailboxes import MailboxSettings

log = logging.getLogger(__name__)

#: How far back a reader looks for messages not yet taken (by arrival date).
LOOK_BACK_DAYS: Final = 14


@dataclass(frozen=True, slots=True)
class MailboxPolicy:
    """How the IMAP door behaves in this process."""

    #: The longest one IDLE lasts before the reader looks again (RFC 2177 asks clients
    #: to renew well within the servers' 30 minutes).
    idle_s: float = 300.0
    #: Between looks, on a server without IDLE.
    poll_s: float = 60.0
    #: The first wait after a failure (sign-in refused, server down); doubles to ``retry_max_s``.
    retry_s: float = 15.0
    retry_max_s: float = 600.0
    #: How long a process's claim on a mailbox lasts without renewal.
    lease_s: float = 60.0
    #: One IMAP command's time limit.
    timeout: float = 30.0
    #: A PEM bundle to trust instead of the system's (a private CA).
    ca_file: str | None = None
    #: Larger messages are left in the mailbox unread (as the SMTP door answers 552).
    max_message_bytes: int = 10 * 1024 * 1024

    def __post_init__(self) -> None:
        if min(self.idle_s, self.poll_s, self.retry_s, self.lease_s, self.timeout) <= 0:
            raise ValueError("the IMAP door's times must be positive")


def envelope_sender(raw: bytes) -> str:
    """The sender the spool records for a message read from a mailbox.

    The receiving server wrote the envelope sender as ``Return-Path`` (RFC 5321 section
    4.4); ``<>`` there is the null sender of a bounce, which the guards never answer.
    Without one, the From address stands in.
    """
    head = BytesHeaderParser(policy=compat32).parsebytes(raw.partition(b"\r\n\r\n")[0] + b"\r\n")
    return_path = head.get("Return-Path")
    if isinstance(return_path, str):
        text = " ".join(return_path.split())
        if text in ("<>", ""):
            return ""
        return parseaddr(text)[1] or text.strip("<>")
    sender = head.get("From")
    return parseaddr(sender)[1] if isinstance(sender, str) else ""


class MailboxReader:
    """Reads one account's mailbox into the spool until cancelled."""

    def __init__(
        self,
        core: Core,
        settings: MailboxSettings,
        *,
        wake: Callable[[], None],
        policy: MailboxPolicy,
    ) -> None:
        self.core = core
        self.settings = settings
        self._wake = wake
        self._policy = policy
        self._store = core.store.mailboxes
        self._opened = False

    async def run(self) -> None:
        failures = 0
        while True:
            self._opened = False
            try:
                await self._read()
            except MailboxError as error:
                await self._status(f"Could not read the mailbox: {error}")
                log.warning("mailbox of %s: %s", self.settings.account, error)
            except SecretUnreadable:
                await self._status("The saved IMAP password can no longer be read; save it again.")
                log.warning("mailbox of %s: password unreadable", self.settings.account)
            except (StoreError, ValueError) as error:
                log.warning("mailbox of %s: %s", self.settings.account, type(error).__name__)
            except Exception:
                log.exception("mailbox of %s: unexpected error", self.settings.account)
            # A reader that got as far as its folder starts its back-off afresh.
            failures = 1 if self._opened else failures + 1
            delay = min(self._policy.retry_max_s, self._policy.retry_s * 2 ** min(failures - 1, 10))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _read(self) -> None:
        settings = self.settings
        password = await self._store.password(settings.account)
        if not password:
            raise MailboxError("no IMAP password is saved")
        server = Server(
            host=settings.host,
            port=settings.port,
            security=settings.security,
            username=settings.username,
            password=password,
            timeout=self._policy.timeout,
            ca_file=self._policy.ca_file,
        )
        session = await open_session(server)
        try:
            folder = await session.select(settings.folder)
            self._opened = True
            if settings.done_folder:
                await session.create(settings.done_folder)
            how = "waiting with IDLE" if session.idles else "polling"
            await self._status(f"Reading {settings.folder} on {settings.host} ({how}).")
            log.info("reading the mailbox of %s (%s)", settings.account, how)
            while True:
                await self.take_new(session, folder)
                wait = self._policy.idle_s if session.idles else self._policy.poll_s
                await session.wait_for_mail(wait)
        finally:
            await session.close()

    async def take_new(self, session: Session, folder: Folder) -> int:
        """Spool every message not yet taken, then mark it; returns how many were new."""
        settings = self.settings
        since = date.fromtimestamp(self.core.clock()) - timedelta(days=LOOK_BACK_DAYS)
        criteria = ["UNDELETED", "SINCE", imap_date(since)]
        flag_in_place = not settings.done_folder
        if flag_in_place and folder.keywords:
            criteria += ["UNKEYWORD", HANDLED]
        uids = await session.search(*criteria)
        known = await self._store.known(
            settings.account, settings.identity, folder.uidvalidity, uids
        )
        taken = 0
        for uid in uids:
            if uid in known:
                if not known[uid]:
                    # Spooled before a crash, not yet marked: mark it, never take it again.
                    await self._mark(session, folder, uid)
                continue
            if await self._take(session, folder, uid):
                taken += 1
        return taken

    async def _take(self, session: Session, folder: Folder, uid: int) -> bool:
        settings = self.settings
        size = await session.size(uid)
        if size is None:
            return False  # gone since the search (moved or expunged by someone else)
        raw = await session.fetch(uid) if size <= self._policy.max_message_bytes else None
        if size <= self._policy.max_message_bytes and raw is None:
            return False
        spool_id = await self._store.take(
            settings.account,
            settings.identity,
            folder.uidvalidity,
            uid,
            raw=raw,
            peer=f"imap:{settings.host}",
            mail_from=envelope_sender(raw) if raw is not None else "",
            rcpt_tos=[(await self.core.store.accounts.get(settings.account)).request_address],
            message_id=header_message_id(raw) if raw is not None else "",
        )
        if raw is None:
            log.warning(
                "mailbox of %s: UID %d left unread (%d bytes, over the limit)",
                settings.account,
                uid,
                size,
            )
        elif spool_id is not None:
            log.info(
                "queued #%d message %s from the mailbox of %s (%d bytes)",
                spool_id,
                header_message_id(raw) or "-",
                settings.account,
                len(raw),
            )
            self._wake()
        await self._mark(session, folder, uid)
        return spool_id is not None

    async def _mark(self, session: Session, folder: Folder, uid: int) -> None:
        settings = self.settings
        if settings.done_folder:
            await session.move(uid, settings.done_folder)
        else:
            await session.flag(uid, keyword=folder.keywords)
        await self._store.marked(settings.account, settings.identity, folder.uidvalidity, uid)

    async def _status(self, text: str) -> None:
        try:
            await self._store.record_status(self.settings.account, text)
        except StoreError:
            log.warning("could not record the mailbox status of %s", self.settings.account)


class MailboxDoor:
    """Runs a reader for every mailbox this process holds the lease of."""

    def __init__(
        self,
        core: Core,
        *,
        wake: Callable[[], None],
        policy: MailboxPolicy,
        owner: str,
    ) -> None:
        self.core = core
        self._wake = wake
        self._policy = policy
        self.owner = owner
        self._readers: dict[str, tuple[MailboxReader, asyncio.Task[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def reading(self) -> list[str]:
        """The accounts whose mailbox this process reads now."""
        return sorted(self._readers)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="mailbox-door")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await _cancelled(task)
        for account in list(self._readers):
            await self._stop_reader(account, release=True)

    async def _supervise(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                # The database is unwell; the next round tries again.
                log.exception("the IMAP door could not check the mailboxes")
            await asyncio.sleep(self._policy.lease_s / 3)

    async def check(self) -> None:
        """One round: renew or take leases, start and stop readers to match."""
        store = self.core.store.mailboxes
        # An account the operator has not allowed (taken off ALLOWED_ACCOUNTS, or set up
        # before the list existed) is not read, as its mail is refused at RCPT.
        wanted = {
            settings.account: settings
            for settings in await store.to_read()
            if self.core.allows(settings.account)
        }
        for account, (reader, task) in list(self._readers.items()):
            current = wanted.get(account)
            if current is None or current.updated != reader.settings.updated or task.done():
                await self._stop_reader(account, release=True)
        for account, settings in wanted.items():
            if await store.claim(account, self.owner, self._policy.lease_s):
                if account not in self._readers:
                    reader = MailboxReader(
                        self.core, settings, wake=self._wake, policy=self._policy
                    )
                    task = asyncio.create_task(reader.run(), name=f"mailbox-{account}")
                    self._readers[account] = (reader, task)
            elif account in self._readers:
                log.warning("the mailbox of %s is read by another process now", account)
                await self._stop_reader(account, release=False)

    async def _stop_reader(self, account: str, *, release: bool) -> None:
        _, task = self._readers.pop(account)
        await _cancelled(task)
        if release:
            with contextlib.suppress(StoreError):
                await self.core.store.mailboxes.release(account, self.owner)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if it goes on.

    On Python 3.11 a cancellation that lands as an ``asyncio.timeout`` or ``wait_for``
    inside the IMAP client expires can come out as a timeout, which the reader takes for
    a failed connection and retries: one ``cancel()`` is then lost and the task runs on.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a mailbox task ended with %s", type(task.exception()).__name__)


__all__ = [
    "LOOK_BACK_DAYS",
    "MailboxDoor",
    "MailboxPolicy",
    "MailboxReader",
    "envelope_sender",
]
