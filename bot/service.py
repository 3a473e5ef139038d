"""The mail bot as one service: listener, spool, worker and outbound relay on one loop.

:class:`BotService` wires the parts together for a process: the SMTP (or LMTP) listener
accepts mail for the request address of any account whose bot is on — asked of
:class:`~permalink.accounts.AccountSettings` at every ``RCPT``, so a change made on the
settings page counts at once — spools it and wakes the worker, which answers through each
account's own relay. ``start`` re-queues what a previous process left half done; ``stop``
stops accepting first, then lets the worker finish what it holds.

``python -m bot.service`` runs the bot alone on a state directory (its ``state.sqlite3``
and ``server.key``), for the crash tests and for running the bot apart from the web door.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import pipeline
from bot.listener import ListenerSettings, SMTPServer, create_listener
from bot.worker import RetryPolicy, Worker
from kashflow.client import KashFlow
from kashflow.documents import DEFAULT_CONCURRENCY
from permalink.accounts import AccountSettings
from permalink.activity import ActivityLog
from permalink.db import Database
from permalink.keyring import Keyring
from permalink.limits import RateLimiter
from permalink.registry import LinkRegistry
from permalink.spool import Spool

# Named, not __name__: under ``python -m`` the module is __main__.
log = logging.getLogger("bot.service")


class BotService:
    """The bot's listener and worker, started and stopped together on the running loop."""

    def __init__(
        self,
        settings: ListenerSettings,
        db: Database,
        keyring: Keyring,
        kashflow: KashFlow,
        public_base_url: str,
        mail_domain: str,
        *,
        concurrency: int = 2,
        retry: RetryPolicy | None = None,
        pdf_concurrency: int = DEFAULT_CONCURRENCY,
        relay_timeout: float = 30.0,
        relay_ca_file: str | None = None,
        trusted_authserv_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.spool = Spool(db)
        self.accounts = AccountSettings(db, keyring)
        self.activity = ActivityLog(db)
        self.context = pipeline.Context(
            spool=self.spool,
            accounts=self.accounts,
            limiter=RateLimiter(db),
            registry=LinkRegistry(db),
            keyring=keyring,
            kashflow=kashflow,
            public_base_url=public_base_url,
            mail_domain=mail_domain,
            pdf_concurrency=pdf_concurrency,
            relay_timeout=relay_timeout,
            relay_ca_file=relay_ca_file,
            trusted_authserv_id=trusted_authserv_id,
        )
        self.worker = Worker(self.context, self.activity, concurrency=concurrency, retry=retry)
        self._listener: SMTPServer | None = None

    @property
    def port(self) -> int:
        """The port the listener is bound to (the real one when configured as 0)."""
        if self._listener is None:
            raise RuntimeError("the bot service has not been started")
        return self._listener.port

    async def accepts(self, address: str) -> bool:
        """Whether ``address`` is the request address of an account with the bot on."""
        account = await self.accounts.account_for_address(address)
        return account is not None and (await self.accounts.get(account)).enabled

    async def start(self) -> None:
        if self._listener is not None:
            return
        requeued = await self.spool.requeue_working()
        if requeued:
            log.warning("re-queued %d message(s) a previous run left unfinished", requeued)
        self.worker.start()
        self._listener = create_listener(
            self.spool, self.accepts, self.settings, wake=self.worker.wake
        )
        try:
            await self._listener.start()
        except BaseException:
            self._listener = None
            await self.worker.stop()
            raise
        log.info("bot listening on %s:%d", self._listener.host, self._listener.port)

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop accepting mail, then give the worker ``timeout`` seconds to finish."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        await self.worker.stop(timeout)

    async def __aenter__(self) -> BotService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# -- running the bot alone --------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.service", description="Run the mail bot on a state directory."
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--kashflow-url", required=True, help="the KashFlow SOAP endpoint")
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025, help="0 picks a free port")
    parser.add_argument("--public-base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--mail-domain", default="localhost")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--retry-base", type=float, default=30.0, help="first retry delay, s")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    keyring = Keyring.load(args.state_dir / "server.key")
    db = Database(args.state_dir / "state.sqlite3")
    try:
        async with KashFlow(args.kashflow_url) as kashflow:
            service = BotService(
                ListenerSettings(host=args.smtp_host, port=args.smtp_port),
                db,
                keyring,
                kashflow,
                args.public_base_url,
                args.mail_domain,
                concurrency=args.concurrency,
                retry=RetryPolicy(base_delay=args.retry_base),
            )
            stopped = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stopped.set)
            async with service:
                # One line on stdout, once listening, so a supervisor or test can connect.
                print(f"listening {args.smtp_host} {service.port}", flush=True)
                await stopped.wait()
    finally:
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


__all__ = ["BotService", "main"]

if __name__ == "__main__":
    sys.exit(main())
