"""One running service: the state, the KashFlow gateway, the web door and the mail door.

``serve`` runs it against real KashFlow; ``demo`` runs it against the sandbox with a
capture relay. Both doors share one event loop, one database and one KashFlow client.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path

from aiohttp import web

from app.config import Settings
from bot.listener import ListenerSettings, server_tls_context
from bot.outbound import account_mailer
from bot.service import BotService
from kashflow.client import KashFlow
from permalink.accounts import AccountSettings
from permalink.db import Database
from permalink.housekeeping import keep_tidy
from permalink.keyring import Keyring, KeyringError
from web.app import WebConfig, create_app
from web.security import RedactingAccessLogger
from web.settings import SEND_MAIL

log = logging.getLogger(__name__)


def load_or_create_keyring(path: Path) -> Keyring:
    """The demo's key file: made on first run (mode 0600), reused afterwards."""
    try:
        return Keyring.create(path)
    except KeyringError:
        return Keyring.load(path)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket bound now, so the real port (for port 0) is known up front."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Runtime:
    """Start and stop everything a ``serve`` process runs, in order."""

    def __init__(
        self, settings: Settings, keyring: Keyring, *, http_socket: socket.socket | None = None
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self._http_socket = http_socket
        self._stack = AsyncExitStack()
        self.db: Database | None = None
        self.kashflow: KashFlow | None = None
        self.bot: BotService | None = None

    async def start(self) -> None:
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = db = Database(s.database)
        self._stack.callback(db.close)
        housekeeping = asyncio.create_task(keep_tidy(db), name="housekeeping")
        self._stack.push_async_callback(_cancel, housekeeping)
        self.kashflow = kashflow = KashFlow(s.kashflow_endpoint, timeout=s.kashflow_timeout)
        self._stack.push_async_callback(kashflow.close)

        app = create_app(
            WebConfig(public_base_url=s.public_base_url, pdf_concurrency=s.pdf_concurrency),
            kashflow=kashflow,
            keyring=self.keyring,
            db=db,
        )
        # The settings pages send test emails and emailed links through the account's own
        # relay; the web door cannot import the bot, so the sender is handed in here.
        app[SEND_MAIL] = account_mailer(AccountSettings(db, self.keyring))
        runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        sock = self._http_socket or bind(s.http_host, s.http_port)
        await web.SockSite(runner, sock).start()

        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = server_tls_context(str(s.tls_cert), str(s.tls_key))
        self.bot = bot = BotService(
            ListenerSettings(
                host=s.smtp_host,
                port=s.smtp_port,
                lmtp=s.lmtp,
                max_message_size=s.max_message_bytes,
                tls_context=tls,
            ),
            db=db,
            keyring=self.keyring,
            kashflow=kashflow,
            public_base_url=s.public_base_url,
            mail_domain=s.mail_domain,
            pdf_concurrency=s.pdf_concurrency,
            trusted_authserv_id=s.trusted_authserv_id,
        )
        await bot.start()
        self._stack.push_async_callback(bot.stop)

    @property
    def smtp_port(self) -> int:
        assert self.bot is not None
        return self.bot.port

    async def stop(self) -> None:
        await self._stack.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


@asynccontextmanager
async def stop_signal() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM; installed before anything announces readiness,
    so a signal that arrives right after start-up still stops the service cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
