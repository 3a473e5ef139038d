"""The bot's side of "no credential or token reaches any log line", over real sockets.

The bot runs end to end — SMTP in, the sandbox KashFlow, a relay that asks for STARTTLS
and AUTH as real relays do — with every logger at DEBUG: the listener's aiosmtpd
``mail.log``, the pipeline, the worker, the relay client, the gateway, the store. Each
path the bot can take is walked: a request answered, a person's answer quoting the bot's
reply (and so its link), the relay down and then back, the relay deferring (4xx),
refusing for good (5xx) and refusing the password, a crash after the link was minted
whose message carries the link, and the settings pages' test email, failing and then
succeeding. Then every record is read — message, traceback and every attribute — for
the KashFlow password, the relay passwords, the server key, the session and every link
the bot wrote, down to any 16 characters of one. The same holds for the IMAP door (its
password, mail quoting a link) and for the links the settings pages mail ("email this
link", a re-issue).
"""

from __future__ import annotations

import logging
import re
from base64 import b64encode
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.mailbox import MailboxPolicy
from bot.worker import Settled
from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, Sandbox
from permalink.reissue import run, start
from permalink.scopes import Scope
from tests.support.bot import ACME, BASE_URL, MakeRig, Rig, body_text, request_mail
from tests.support.core import make_core
from tests.support.imap import PASSWORD, USER, MakeDovecot, append, configure_mailbox, until
from tests.support.logs import (
    all_at_debug,
    assert_no_secret,
    every_logger_at_debug,
    everything_logged,
)
from tests.support.signed_in import BASE, Accountant, settings_site
from web.app import create_app
from web.settings.session import COOKIE

Client = TestClient[web.Request, web.Application]

RELAY_USER = "northwind-mailer"
RELAY_PASSWORD = "Relay-Passw0rd-kept-sealed-42"
WRONG_RELAY_PASSWORD = "Typo-Relay-Passw0rd-saved-by-mistake"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TOKEN = re.compile(re.escape(BASE_URL) + r"/l/([A-Za-z0-9_-]+)")
_PUBLIC_TOKEN = re.compile(re.escape(BASE) + r"/l/([A-Za-z0-9_-]+)")


def answering(reply: EmailMessage, body: str) -> bytes:
    """The customer's answer to the bot's reply, quoting it whole (its link included), as
    mail clients do."""
    body_part = reply.get_body(("plain",))
    assert isinstance(body_part, EmailMessage)
    quoted = "\r\n".join(f"> {line}" for line in str(body_part.get_content()).splitlines())
    chain = f"{reply['References'] or ''} {reply['Message-ID']}".strip()
    return request_mail(
        f"{body}\r\n\r\nOn Monday, Northwind wrote:\r\n{quoted}",
        subject=f"Re: {reply['Subject']}",
        extra=f"In-Reply-To: {reply['Message-ID']}\r\nReferences: {chain}\r\n",
    )


async def settled_as(rig: Rig, state: str, count: int) -> Settled:
    """The ``count``-th settled attempt, which must have left its message in ``state``."""
    settled = await rig.settle(count)
    assert settled[-1].state == state, settled[-1]
    return settled[-1]


async def sign_in(client: Client) -> str:
    page = await (await client.get("/settings/login")).text()
    csrf = _CSRF.search(page)
    assert csrf is not None
    response = await client.post(
        "/settings/login",
        data={"csrf": csrf.group(1), "username": DEMO.username, "password": DEMO.password},
        allow_redirects=False,
    )
    assert response.status == 303
    return response.cookies[COOKIE].value


async def settings_form(client: Client, path: str, **fields: str) -> tuple[int, str]:
    page = await (await client.get("/settings/bot")).text()
    csrf = _CSRF.search(page)
    assert csrf is not None
    response = await client.post(path, data={"csrf": csrf.group(1), **fields})
    return response.status, await response.text()


def bot_form(rig: Rig, password: str) -> dict[str, str]:
    return {
        "enabled": "on",
        "request_address": "invoices@northwind.example",
        "reply_from": "",
        "default_scope": "unpaid",
        "unknown_sender": "ignore",
        "per_customer_limit": "50",
        "global_limit": "60",
        "max_attachment_mb": "10",
        "use_my_credentials": "on",
        "relay_host": "127.0.0.1",
        "relay_port": str(rig.capture.port),
        "relay_security": "starttls",
        "relay_username": RELAY_USER,
        "relay_password": password,
        "greeting": "",
        "intro": "",
        "sign_off": "",
        "action": "save",
    }


async def test_no_credential_key_or_token_reaches_any_record_of_the_bot(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture, aiohttp_client: Any
) -> None:
    with every_logger_at_debug(caplog):
        rig = await make_rig(relay_auth=(RELAY_USER, RELAY_PASSWORD), per_customer_limit=50)
        # Loggers first made as the bot started (aiosmtpd's, the relay's) at DEBUG too.
        all_at_debug(caplog, "mail.log", "permalink.relay", "bot.worker", "bot.pipeline")
        links: set[str] = set()

        # A request answered, through the relay's STARTTLS and AUTH.
        await rig.send(request_mail("Please send me my invoices."))
        [first] = await rig.capture.wait_for(1)
        links.update(_TOKEN.findall(body_text(first)))

        # The customer answers, quoting the reply and so its link, and asks again.
        await rig.send(answering(first.parsed(), "Thanks! Could you send all of them?"))
        second = (await rig.capture.wait_for(2))[1]
        links.update(_TOKEN.findall(body_text(second)))
        await settled_as(rig, "done", 2)

        # The relay down, then back: kept, retried, sent.
        await rig.capture.close()
        await rig.send(request_mail("Please send the unpaid invoices."))
        await settled_as(rig, "retry", 3)
        await rig.capture.start()
        third = (await rig.capture.wait_for(3))[2]
        links.update(_TOKEN.findall(body_text(third)))
        await settled_as(rig, "done", 4)

        # The relay deferring (4xx), then taking it.
        rig.capture.fail_with = (451, "4.3.0 Try again later")
        await rig.send(request_mail("Could I have my invoices please?"))
        await settled_as(rig, "retry", 5)
        rig.capture.fail_with = None
        fourth = (await rig.capture.wait_for(4))[3]
        links.update(_TOKEN.findall(body_text(fourth)))
        await settled_as(rig, "done", 6)

        # The relay refusing for good, then refusing the password: parked, with reasons.
        rig.capture.fail_with = (554, "5.7.1 Relaying denied")
        await rig.send(request_mail("Invoices please."))
        await settled_as(rig, "parked", 7)
        rig.capture.fail_with = None
        await rig.core.store.accounts.set_relay_password("demo", WRONG_RELAY_PASSWORD)
        await rig.send(request_mail("My invoices, please."))
        await settled_as(rig, "parked", 8)
        await rig.core.store.accounts.set_relay_password("demo", RELAY_PASSWORD)

        # A crash after the link was minted, the exception carrying the link: parked as
        # poison after its tries, the queue still flowing.
        minted: list[str] = []

        def broken(**reply: Any) -> EmailMessage:
            minted.append(reply["link_url"])
            raise RuntimeError(f"could not write the reply with {reply['link_url']}")

        with mock.patch("bot.pipeline.compose_reply", side_effect=broken):
            await rig.send(request_mail("All my invoices, please."))
            await settled_as(rig, "parked", 11)
        assert len(minted) == 3  # one link per try, none of them sent
        links.update(url.rsplit("/", 1)[1] for url in minted)

        # The settings pages' test email (served over plain http, so the session cookie
        # comes back): a mistyped relay password, then the right one.
        pages = make_core(
            rig.db,
            rig.keyring,
            rig.kashflow,
            public_base_url="http://settings.test",
            relay_ca_file=rig.core.config.relay_ca_file,
        )
        try:
            client: Client = await aiohttp_client(create_app(pages))
            session = await sign_in(client)
            for password, outcome in (
                (WRONG_RELAY_PASSWORD, "The email was not sent"),
                (RELAY_PASSWORD, "The test email was handed to the relay."),
            ):
                form = bot_form(rig, password)
                assert (await settings_form(client, "/settings/bot", **form))[0] == 200
                _, page = await settings_form(client, "/settings/bot/test-email")
                assert outcome in page
            await rig.capture.wait_for(5)
        finally:
            pages.close()

    records = caplog.records
    logged = everything_logged(records)
    # The paths were walked and logged (so an empty log cannot pass).
    for logger in ("mail.log", "bot.listener", "bot.worker", "permalink.relay", "aiohttp.access"):
        assert any(r.name == logger for r in records), logger
    assert logging.getLogger("mail.log").getEffectiveLevel() == logging.DEBUG
    assert "RuntimeError" in logged and "Relaying denied" in logged and "535" in logged
    assert len(links) == 4 + 3  # four replies and three minted by the crashing tries
    secrets = [DEMO.password, RELAY_PASSWORD, WRONG_RELAY_PASSWORD, session]
    # As they cross the wire in AUTH PLAIN and AUTH LOGIN.
    for password in (RELAY_PASSWORD, WRONG_RELAY_PASSWORD):
        secrets.append(b64encode(password.encode()).decode())
        secrets.append(b64encode(f"\0{RELAY_USER}\0{password}".encode()).decode())
    secrets += [entry.split(":", 1)[1] for entry in rig.keyring.to_env().split(",")]
    assert_no_secret(logged, secrets, tokens=links)
    assert {tuple(m.rcpt_tos) for m in rig.capture.messages[:4]} == {(ACME,)}


WRONG_IMAP_PASSWORD = "Typo-Imap-Passw0rd-saved-by-mistake"


async def test_the_mailbox_door_logs_no_password_and_no_link(
    make_rig: MakeRig, make_dovecot: MakeDovecot, caplog: pytest.LogCaptureFixture
) -> None:
    """The IMAP door (Dovecot on loopback) at DEBUG: a mistyped IMAP password, then the
    right one; a request fetched and answered; the client's answer quoting the link,
    fetched and answered too."""
    with every_logger_at_debug(caplog):
        server = make_dovecot()
        rig = await make_rig(
            mailboxes=MailboxPolicy(
                idle_s=3600.0,
                poll_s=3600.0,
                retry_s=0.05,
                retry_max_s=0.2,
                lease_s=3.0,
                ca_file=str(server.certificate),
            )
        )
        all_at_debug(caplog, "bot.mailbox", "bot.imap", "bot.worker", "bot.pipeline")
        mailboxes = rig.core.store.mailboxes
        door = rig.service.door
        assert door is not None
        links: set[str] = set()

        await append(server, request_mail("Please send me my invoices."))
        await configure_mailbox(mailboxes, server, password=WRONG_IMAP_PASSWORD)
        await door.check()

        async def refused() -> bool:
            return "could not sign in" in (await mailboxes.get("demo")).status

        await until(refused, within=30)
        await mailboxes.set_password("demo", PASSWORD)
        await door.check()
        [first] = await rig.capture.wait_for(1)
        links.update(_TOKEN.findall(body_text(first)))

        await append(server, answering(first.parsed(), "Thanks! Could you send all of them?"))
        second = (await rig.capture.wait_for(2))[1]
        links.update(_TOKEN.findall(body_text(second)))
        await settled_as(rig, "done", 2)

    records = caplog.records
    logged = everything_logged(records)
    for logger in ("bot.mailbox", "bot.worker"):
        assert any(r.name == logger for r in records), logger
    assert len(links) == 2
    secrets = [PASSWORD, WRONG_IMAP_PASSWORD, DEMO.password]
    for password in (PASSWORD, WRONG_IMAP_PASSWORD):  # as AUTHENTICATE PLAIN would send it
        secrets.append(b64encode(f"\0{USER}\0{password}".encode()).decode())
    assert_no_secret(logged, secrets, tokens=links)


async def test_emailed_and_reissued_links_reach_no_record(
    tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Mail the settings pages send carries links too: "email this link", then a
    re-issue after a KashFlow password change, at DEBUG."""
    changed = Credentials("demo", "changed-api-pass-for-logs")
    with every_logger_at_debug(caplog):
        async with settings_site(tmp_path, kashflow, sandbox) as site:
            core = site.core
            await core.store.domains.mark_proved("demo", "northwind-studio.example", "operator")
            await core.store.accounts.set_bot_credentials("demo", DEMO)
            await core.store.accounts.update(
                "demo",
                request_address="invoices@northwind-studio.example",
                relay_host="127.0.0.1",
                relay_port=site.capture.port,
                relay_security="none",
            )
            all_at_debug(caplog, "permalink.relay", "permalink.reissue", "web.settings")
            minted = await core.mint(
                DEMO,
                await core.kashflow(DEMO).customer_by_code("FOX01"),
                Scope("all"),
                minted_by="settings",
            )
            accountant = Accountant(site)
            try:
                assert (await accountant.sign_in()).status == 303
                page = await accountant.post(
                    "/settings/customers/FOX01/email",
                    {"link": minted.link.link_id},
                    page="/settings/customers/FOX01",
                )
                assert page.status == 200, page.text
            finally:
                await accountant.close()
            [emailed] = await site.capture.wait_for(1)

            sandbox.set_api_password("demo", changed.password)
            job_id = await start(core, changed, now=int(core.clock()))
            assert job_id is not None
            await run(core, job_id, changed, owner="test")
            reissued = (await site.capture.wait_for(2))[1]

    links = {_PUBLIC_TOKEN.findall(body_text(mail))[0] for mail in (emailed, reissued)}
    assert len(links) == 2
    links.add(minted.url.rsplit("/", 1)[1])
    logged = everything_logged(caplog.records)
    assert any(r.name == "aiohttp.access" for r in caplog.records)
    assert_no_secret(logged, [DEMO.password, changed.password], tokens=links)
