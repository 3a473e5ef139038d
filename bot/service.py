"""The mail bot as one service: listener and worker on one loop, around the core.

:class:`BotService` wires the parts together for a process: the SMTP (or LMTP) listener
accepts mail for the request address of any account whose bot is on — asked of the store
at every ``RCPT``, so a change made on the settings page counts at once — files it under
that account in the spool and wakes the worker, which answers through each account's own
relay. The IMAP door (:mod:`bot.mailbox`), when asked for, reads the accounts' mailboxes
into the same spool. Any number of bot processes can share one store: the spool hands
each message to one worker by lease (and each mailbox to one reader), and a process that
dies leaves its messages to the others. ``stop`` stops accepting first, then lets the
worker finish what it holds.
"""

from __future__ import annotations

import logging

from bot import pipeline
from bot.listener import ListenerSettings, SMTPServer, create_listener
from bot.mailbox import MailboxDoor, MailboxPolicy
from bot.worker import RetryPolicy, Worker
from permalink.core import Core

log = logging.getLogger(__name__)


class BotService:
    """The bot's listener and worker, started and stopped together on the running loop."""

    def __init__(
        self,
        core: Core,
        settings: ListenerSettings | None,
        *,
        concurrency: int = 2,
        retry: RetryPolicy | None = None,
        trusted_authserv_id: str | None = None,
        idle_s: float = 5.0,
        mailboxes: MailboxPolicy | None = None,
    ) -> None:
        """``settings`` None runs a worker only (another process accepts the mail);
        ``mailboxes`` runs the IMAP door too (see :mod:`bot.mailbox`)."""
        self.core = core
        self.settings = settings
        self.context = pipeline.Context(core=core, trusted_authserv_id=trusted_authserv_id)
        self.worker = Worker(self.context, concurrency=concurrency, retry=retry, idle_s=idle_s)
        self._listener: SMTPServer | None = None
        self.door: MailboxDoor | None = None
        if mailboxes is not None:
            self.door = MailboxDoor(
                core, wake=self.worker.wake, policy=mailboxes, owner=self.worker.owner
            )

    @property
    def port(self) -> int:
        """The port the listener is bound to (the real one when configured as 0)."""
        if self._listener is None:
            raise RuntimeError("the bot service has not been started")
        return self._listener.port

    async def accepts(self, address: str) -> str | None:
        """The account ``address`` is the request address of, if its bot is on (and the
        deployment allows the account)."""
        accounts = self.core.store.accounts
        account = await accounts.account_for_address(address)
        if account is None or not self.core.allows(account):
            return None
        if not (await accounts.get(account)).enabled:
            return None
        return account

    async def start(self) -> None:
        if self.worker.running:
            return
        await self.context.reader.start()
        self.worker.start()
        if self.door is not None:
            self.door.start()
        if self.settings is None:
            return
        self._listener = create_listener(
            self.core.store.spool, self.accepts, self.settings, wake=self.worker.wake
        )
        try:
            await self._listener.start()
        except BaseException:
            self._listener = None
            if self.door is not None:
                await self.door.stop()
            await self.worker.stop()
            raise
        log.info(
            "bot listening for %s on %s:%d",
            "LMTP" if self.settings.lmtp else "SMTP",
            self._listener.host,
            self._listener.port,
        )

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop accepting mail, then give the worker ``timeout`` seconds to finish."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        if self.door is not None:
            await self.door.stop()
        await self.worker.stop(timeout)
        await self.context.reader.close()

    async def __aenter__(self) -> BotService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


__all__ = ["BotService"]
