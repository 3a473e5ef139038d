"""One running process: the core built once from the settings, and the doors its role runs.

``serve`` runs it against real KashFlow; ``demo`` against the sandbox with a capture
relay. The root is the only place that names the implementations behind the core's seams:
the SOAP client (Gateway), the SQL store on SQLite or PostgreSQL (Store) and the SMTP
relay client (Mailer). A process with the ``web`` role serves the web door, one with the
``bot`` role the mail bot, ``all`` both on one event loop around one core.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Final

from aiohttp import web

from app.config import ConfigError, Settings, named
from bot.listener import ListenerSettings, server_tls_context
from bot.mailbox import MailboxPolicy
from bot.service import BotService
from bot.worker import RetryPolicy
from kashflow.client import KashFlow
from permalink.core import Core, CoreConfig
from permalink.db import open_database
from permalink.housekeeping import keep_tidy
from permalink.keyring import Keyring, KeyringError, KeyringSource
from permalink.relay import SmtpMailer
from permalink.store import SqlStore
from web.app import WebConfig, create_app, runner

log = logging.getLogger(__name__)

#: How often an idle bot worker looks at the spool for mail it was not woken for (mail
#: another process accepted, or requeued from the shell or the settings page).
IDLE_LOOK_S: Final = 5.0


class PortUnavailable(ConfigError):
    """A listener could not bind; the message names the setting, the address and why."""

    def __init__(self, setting: str, host: str, port: int, error: OSError) -> None:
        if error.errno == errno.EADDRINUSE:
            why = "the port is already in use"
        elif error.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif error.errno == errno.EADDRNOTAVAIL:
            why = "that address is not one of this machine's"
        else:
            why = error.strerror or type(error).__name__
        super().__init__(f"cannot listen on {host}:{port} ({named(setting)}): {why}")


def load_or_create_keyring(path: Path) -> Keyring:
    """The demo's key file: made on first run (mode 0600), reused afterwards."""
    try:
        return Keyring.create(path)
    except KeyringError:
        return Keyring.load(path)


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket bound now, so the real port (for port 0) is known up front."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def build_core(
    settings: Settings,
    keyring: Keyring | KeyringSource,
    *,
    clock: Callable[[], float] | None = None,
) -> Core:
    """The process's one core, from its settings (opens and migrates the database)."""
    db = open_database(settings.database_url, settings.state_dir)
    store = SqlStore(db, keyring, lease_s=settings.lease_seconds)
    gateway = KashFlow(
        settings.kashflow_endpoint,
        timeout=settings.kashflow_timeout,
        pdf_hosts=settings.pdf_hosts,
        print_batch=settings.pdf_batch,
    )
    config = CoreConfig(
        public_base_url=settings.public_base_url,
        mail_domain=settings.mail_domain,
        pdf_concurrency=settings.pdf_concurrency,
        allowed_accounts=frozenset(settings.allowed_accounts),
    )
    return Core(
        config,
        gateway=gateway,
        store=store,
        mailer=SmtpMailer(settings.relay_allow_list),
        keyring=keyring,
        clock=clock or time.time,
    )


async def close_core(core: Core) -> None:
    """Close what :func:`build_core` opened."""
    core.close()
    await core.gateway.close()
    core.store.close()


class Runtime:
    """Start and stop everything a ``serve`` process runs, in order."""

    def __init__(
        self,
        settings: Settings,
        keyring: Keyring | KeyringSource,
        *,
        http_socket: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self._http_socket = http_socket
        self._stack = AsyncExitStack()
        self.core: Core | None = None
        self.bot: BotService | None = None
        self.http_port: int | None = None

    @property
    def runs_web(self) -> bool:
        return self.settings.role in ("all", "web")

    @property
    def runs_bot(self) -> bool:
        return self.settings.role in ("all", "bot")

    async def start(self) -> None:
        s = self.settings
        self.core = core = build_core(s, self.keyring)
        self._stack.push_async_callback(close_core, core)
        housekeeping = asyncio.create_task(keep_tidy(core.store), name="housekeeping")
        self._stack.push_async_callback(_cancel, housekeeping)
        if self.runs_web:
            await self._start_web(core)
        if self.runs_bot:
            await self._start_bot(core)

    async def _start_web(self, core: Core) -> None:
        s = self.settings
        app = create_app(core, WebConfig(trusted_proxies=s.proxies))
        web_runner = runner(app)
        await web_runner.setup()
        self._stack.push_async_callback(web_runner.cleanup)
        try:
            sock = self._http_socket or bind(s.http_host, s.http_port, reuse_port=True)
        except OSError as error:
            raise PortUnavailable("http_port", s.http_host, s.http_port, error) from None
        self.http_port = sock.getsockname()[1]
        await web.SockSite(web_runner, sock).start()

    async def _start_bot(self, core: Core) -> None:
        s = self.settings
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            try:
                tls = server_tls_context(str(s.tls_cert), str(s.tls_key))
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(
                    f"the TLS certificate {s.tls_cert} and key {s.tls_key} ({named('tls_cert')},"
                    f" {named('tls_key')}) cannot be loaded: {error}"
                ) from None
        self.bot = bot = BotService(
            core,
            ListenerSettings(
                host=s.smtp_host,
                port=s.smtp_port,
                lmtp=s.lmtp,
                max_message_size=s.max_message_bytes,
                tls_context=tls,
                reuse_port=True,
            ),
            concurrency=s.bot_concurrency,
            retry=RetryPolicy(base_delay=s.retry_base_seconds),
            trusted_authserv_id=s.trusted_authserv_id,
            mailboxes=MailboxPolicy(
                idle_s=s.imap_idle_seconds,
                poll_s=s.imap_poll_seconds,
                lease_s=s.lease_seconds,
                retry_s=min(15.0, s.retry_base_seconds),
                ca_file=None if s.imap_ca_file is None else str(s.imap_ca_file),
                max_message_bytes=s.max_message_bytes,
            ),
            idle_s=IDLE_LOOK_S,
        )
        try:
            await bot.start()
        except OSError as error:
            raise PortUnavailable("smtp_port", s.smtp_host, s.smtp_port, error) from None
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


class StopEvent(asyncio.Event):
    """Set when the process should stop; ``reason`` says why (``SIGTERM``, ``SIGINT``)."""

    reason: str = ""

    def stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.set()


@asynccontextmanager
async def stop_signal(
    on_hangup: Callable[[], None] | None = None,
) -> AsyncIterator[StopEvent]:
    """An event set by SIGINT or SIGTERM; installed before anything announces readiness,
    so a signal that arrives right after start-up still stops the service cleanly.
    ``on_hangup`` runs on each SIGHUP (re-reading the key file)."""
    stop = StopEvent()
    loop = asyncio.get_running_loop()
    handled = [signal.SIGINT, signal.SIGTERM]
    for sig in handled:
        loop.add_signal_handler(sig, stop.stop, sig.name)
    if on_hangup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        handled.append(signal.SIGHUP)
    try:
        yield stop
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
