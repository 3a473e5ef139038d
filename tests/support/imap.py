"""A real IMAP server for the bot's IMAP door: Debian's Dovecot on loopback (app.dovecot).

:func:`dovecots` starts servers (with or without IDLE) and stops every one afterwards;
:func:`configure_mailbox` points an account's mailbox settings at one; :func:`flags_of`
and :func:`uids_in` look at a folder the way a person's mail client would.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.dovecot import HOST, Dovecot
from permalink.mailboxes import Mailboxes, MailboxSettings

USER = "invoices"
PASSWORD = "imap-Pass-4-tests"

MakeDovecot = Callable[..., Dovecot]


@contextmanager
def dovecots() -> Iterator[MakeDovecot]:
    started: list[Dovecot] = []

    def make(*, idle: bool = True) -> Dovecot:
        server = Dovecot(users={USER: PASSWORD}, idle=idle)
        server.start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


async def configure_mailbox(
    mailboxes: Mailboxes,
    server: Dovecot,
    *,
    account: str = "demo",
    security: str = "ssl",
    done_folder: str = "",
    password: str = PASSWORD,
) -> MailboxSettings:
    await mailboxes.set_password(account, password)
    return await mailboxes.update(
        account,
        host=HOST,
        port=server.ssl_port if security == "ssl" else server.port,
        security=security,
        username=USER,
        folder="INBOX",
        done_folder=done_folder,
    )


def _flags(server: Dovecot, folder: str) -> dict[int, set[str]]:
    client = server.client(USER)
    try:
        client.select(folder)
        _status, data = client.uid("FETCH", "1:*", "(UID FLAGS)")
        found: dict[int, set[str]] = {}
        for item in data:
            if not isinstance(item, bytes):
                continue
            match = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item)
            if match:
                found[int(match[1])] = set(match[2].decode().split())
        return found
    finally:
        client.logout()


async def flags_of(server: Dovecot, folder: str = "INBOX") -> dict[int, set[str]]:
    """Each message's flags in ``folder``, by UID."""
    return await asyncio.to_thread(_flags, server, folder)


async def append(server: Dovecot, *messages: bytes, **options: Any) -> None:
    await asyncio.to_thread(server.append, USER, *messages, **options)


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    """Wait, at most ``within`` seconds, for ``check`` to hold: for a state kept in a
    mail server or a database, which nothing here can subscribe to."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - no event exists for this state
            await asyncio.sleep(0.05)


__all__ = [
    "PASSWORD",
    "USER",
    "MakeDovecot",
    "append",
    "configure_mailbox",
    "dovecots",
    "flags_of",
    "until",
]
