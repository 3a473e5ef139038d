"""The mail bot's test rig: a BotService around a core, a capture relay, the sandbox.

smtplib (in a thread) -> BotService (listener, spool, worker) -> sandbox KashFlow ->
CaptureServer standing in for the relay. :func:`bot_rigs` starts as many as a test asks
for, each with its own state (SQLite by default, or a PostgreSQL URL); :class:`Rig` sends
mail and reads back what a customer would receive.
"""

from __future__ import annotations

import asyncio
import io
import re
import smtplib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from bot.capture import CapturedMessage, CaptureServer, Credentials, self_signed_certificate
from bot.listener import ListenerSettings, server_tls_context
from bot.service import BotService
from bot.worker import RetryPolicy, Settled
from kashflow.client import KashFlow
from kashflow.sandbox import DEMO, Sandbox
from permalink.activity import Event
from permalink.core import Core
from permalink.db import Database, open_database
from permalink.keyring import Keyring
from permalink.links import Link, open_link
from tests.support.core import make_core

REQUEST = "invoices@northwind.example"
DOMAIN = "bot.northwind.example"
BASE_URL = "https://invoices.northwind.example"
ACME = "accounts@acme-fab.example"
MAIL = Path(__file__).resolve().parent.parent / "data" / "mail"


def request_mail(
    body: str = "Hello, please send me my invoices.",
    *,
    sender: str = ACME,
    subject: str = "Invoices",
    message_id: str | None = None,
    extra: str = "",
) -> bytes:
    message_id = message_id or make_msgid(domain="client.example")
    return (
        f"From: Client <{sender}>\r\nTo: {REQUEST}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: Mon, 10 Mar 2025 09:00:00 +0000\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def scenario(name: str, replace: dict[str, str]) -> bytes:
    """A recorded message from tests/data/mail with its people swapped for sandbox ones."""
    raw = (MAIL / name).read_bytes()
    for old, new in replace.items():
        raw = re.sub(re.escape(old).encode(), new.encode(), raw, flags=re.IGNORECASE)
    return re.sub(rb"\r?\n", b"\r\n", raw)


@dataclass
class Rig:
    service: BotService
    capture: CaptureServer
    sandbox: Sandbox
    kashflow: KashFlow
    keyring: Keyring
    db: Database

    @property
    def core(self) -> Core:
        return self.service.core

    async def send(self, raw: bytes, *, mail_from: str = ACME, rcpt: str = REQUEST) -> None:
        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", self.service.port, timeout=60) as client:
                client.sendmail(mail_from, [rcpt], raw)

        await asyncio.to_thread(deliver)

    async def settle(self, count: int, timeout: float = 60.0) -> list[Settled]:  # noqa: ASYNC109
        """The first ``count`` settled attempts, once they have happened."""
        settled = await self.service.worker.wait_for(lambda s: len(s) >= count, timeout)
        return settled[:count]

    async def events(self) -> list[Event]:
        return list(reversed(await self.core.store.activity.page("demo")))

    def link(self, reply: CapturedMessage) -> Link:
        text = body_text(reply)
        match = re.search(re.escape(BASE_URL) + r"/l/([A-Za-z0-9_-]+)", text)
        assert match, "the reply carries the permalink"
        return open_link(match.group(1), self.keyring, now=2_000_000_000)


def body_text(reply: CapturedMessage) -> str:
    body = reply.parsed().get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def attachment(reply: CapturedMessage) -> bytes | None:
    for part in reply.parsed().iter_attachments():
        if part.get_content_type() == "application/pdf":
            data = part.get_content()
            assert isinstance(data, bytes)
            return data
    return None


def pages(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


MakeRig = Callable[..., Awaitable[Rig]]


@asynccontextmanager
async def bot_rigs(
    tmp_path: Path, sandbox: Sandbox, kashflow: KashFlow, *, database_url: str | None = None
) -> AsyncIterator[MakeRig]:
    """Start bots for the sandbox's ``demo`` account; keyword arguments are bot settings
    (plus ``trusted_authserv_id``, ``credentials``, ``lease_s``, ``mailboxes``, the IMAP
    door's policy, ``allowed_accounts``, the operator's list, ``retry``, the worker's
    :class:`RetryPolicy`, and ``relay_auth``: a ``(username, password)`` the relay asks for, over
    STARTTLS, as real relays do)."""
    started: list[tuple[BotService, CaptureServer, Database]] = []

    async def make(**bot_settings: Any) -> Rig:
        directory = tmp_path / f"state-{len(started)}"
        db = open_database(database_url, directory)
        keyring = Keyring.generate()
        relay_auth: tuple[str, str] | None = bot_settings.pop("relay_auth", None)
        secure: dict[str, Any] = {}
        relay_ca: str | None = None
        if relay_auth is not None:
            cert, key = self_signed_certificate(tmp_path / f"relay-tls-{len(started)}")
            relay_ca = str(cert)
            secure = {
                "tls_context": server_tls_context(str(cert), str(key)),
                "credentials": Credentials(*relay_auth),
            }
        capture = CaptureServer(tmp_path / f"outbox-{len(started)}", **secure)
        await capture.start()
        core = make_core(
            db,
            keyring,
            kashflow,
            public_base_url=BASE_URL,
            mail_domain=DOMAIN,
            lease_s=bot_settings.pop("lease_s", None),
            relay_ca_file=relay_ca,
            allowed_accounts=frozenset(bot_settings.pop("allowed_accounts", ())),
        )
        service = BotService(
            core,
            ListenerSettings(host="127.0.0.1", port=0),
            retry=bot_settings.pop("retry", RetryPolicy(base_delay=0.05, max_delay=0.2)),
            trusted_authserv_id=bot_settings.pop("trusted_authserv_id", None),
            # No idle polling: a test's worker looks at the spool when woken, or when a
            # retry or a lease falls due, never at a moment the test did not choose.
            idle_s=3600,
            mailboxes=bot_settings.pop("mailboxes", None),
        )
        accounts = core.store.accounts
        await accounts.set_bot_credentials("demo", bot_settings.pop("credentials", DEMO))
        settings: dict[str, Any] = {
            "enabled": True,
            "request_address": REQUEST,
            "relay_host": "127.0.0.1",
            "relay_port": capture.port,
            "relay_security": "none",
            "default_scope": "unpaid",
            **bot_settings,
        }
        if relay_auth is not None:
            settings.update(relay_security="starttls", relay_username=relay_auth[0])
            await accounts.set_relay_password("demo", relay_auth[1])
        await accounts.update("demo", **settings)
        await service.start()
        started.append((service, capture, db))
        return Rig(service, capture, sandbox, kashflow, keyring, db)

    try:
        yield make
    finally:
        for service, capture, db in started:
            await service.stop()
            await capture.close()
            service.core.close()
            db.close()


async def expected_pages(rig: Rig, numbers: list[int]) -> int:
    account = rig.kashflow.account(DEMO)
    return sum([pages(await account.invoice_pdf(n)) for n in numbers])


def unpaid_numbers(rig: Rig, code: str) -> list[int]:
    return [i.number for i in rig.sandbox.invoices("demo", code) if not i.paid]


__all__ = [
    "ACME",
    "BASE_URL",
    "DOMAIN",
    "MAIL",
    "REQUEST",
    "MakeRig",
    "Rig",
    "attachment",
    "body_text",
    "bot_rigs",
    "expected_pages",
    "pages",
    "request_mail",
    "scenario",
    "unpaid_numbers",
]
