"""The web door as an operator's deployment meets it, over real sockets.

Who may use a deployment (the allowed KashFlow accounts, told on the sign-in refusal and
at the mail bot's RCPT), a scripted sign-in from another origin told what is wrong, HEAD
on the PDF URLs answered like GET without the body, and the bot page telling the truth
when a stored secret no longer opens with the server key.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.listener import ListenerSettings
from bot.service import BotService
from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, SECOND
from permalink.accounts import AccountSettings
from permalink.activity import PDF_DOWNLOADED
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.mailboxes import Mailboxes
from tests.support import WebRig, web_rig
from tests.support.bot import ACME, REQUEST, request_mail
from tests.support.core import make_core
from web.app import create_app
from web.security import RedactingAccessLogger

BASE = "http://invoices.test"
Client = TestClient[web.Request, web.Application]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    config = {"public_base_url": BASE, "allowed_accounts": frozenset({"Demo"})}
    async with web_rig(tmp_path, core_config=config) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    server = await aiohttp_server(rig.app, access_log_class=RedactingAccessLogger)
    client: Client = await aiohttp_client(server)
    return client


async def csrf(client: Client, path: str = "/settings/login") -> str:
    page = await (await client.get(path)).text()
    match = _CSRF.search(page)
    assert match is not None, page
    return match.group(1)


async def sign_in(
    client: Client, credentials: Credentials, *, follow: bool = False, **headers: str
) -> tuple[int, str]:
    """Send the sign-in form; the answer (``follow``: the page its redirect leads to)."""
    token = await csrf(client)
    response = await client.post(
        "/settings/login",
        data={"csrf": token, "username": credentials.username, "password": credentials.password},
        headers=headers,
        allow_redirects=follow,
    )
    return response.status, await response.text()


# -- who may use the deployment ------------------------------------------------------------


async def test_an_account_the_operator_has_not_allowed_is_told_so_at_sign_in(
    client: Client,
) -> None:
    _, page = await sign_in(client, SECOND, follow=True)
    text = " ".join(page.split())
    assert "KashFlow accepted you, but this server serves only the KashFlow accounts" in text
    assert "second is not one of them" in text and "ALLOWED_ACCOUNTS" in text
    assert "Sign out" not in page  # back on the sign-in form, not signed in
    # A wrong password learns nothing about the list: KashFlow's refusal comes first.
    _, page = await sign_in(client, Credentials("second", "wrong"), follow=True)
    assert "did not accept" in page and "not one of them" not in page
    # An allowed account (compared without regard to case) gets in.
    status, _ = await sign_in(client, DEMO)
    assert status == 303
    assert "Sign out" in await (await client.get("/settings/customers")).text()


async def test_a_signed_in_account_taken_off_the_list_is_signed_out(
    rig: WebRig, client: Client, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    assert (await sign_in(client, DEMO))[0] == 303
    [cookie] = [f"{c.key}={c.value}" for c in client.session.cookie_jar]
    # The operator restarts the server with a list that leaves the account out.
    for allowed, signed_in in (({"demo"}, True), ({"second"}, False)):
        core = make_core(
            rig.db,
            rig.keyring,
            rig.kashflow,
            clock=rig.clock,
            public_base_url=BASE,
            allowed_accounts=frozenset(allowed),
        )
        try:
            restarted: Client = await aiohttp_client(
                await aiohttp_server(create_app(core, rig.config))
            )
            response = await restarted.get("/settings/customers", headers={"Cookie": cookie})
            page = await response.text()
            assert ("Sign out" in page) == signed_in, allowed
            assert ("Sign in with KashFlow" in page) != signed_in, allowed
        finally:
            core.close()


async def test_the_bot_refuses_mail_for_an_account_the_operator_has_not_allowed(
    tmp_path: Path, kashflow: KashFlow
) -> None:
    db = open_database(None, tmp_path)
    core = make_core(db, Keyring.generate(), kashflow, allowed_accounts=frozenset({"second"}))
    await core.store.accounts.set_bot_credentials("demo", DEMO)
    await core.store.accounts.update(
        "demo", enabled=True, request_address=REQUEST, relay_host="127.0.0.1"
    )
    service = BotService(core, ListenerSettings(port=0), idle_s=3600)
    await service.start()
    try:

        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", service.port, timeout=10) as smtp:
                smtp.sendmail(ACME, [REQUEST], request_mail())

        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await asyncio.to_thread(deliver)
        assert refused.value.recipients[REQUEST][0] == 550
    finally:
        await service.stop()
        core.close()
        db.close()


# -- a form from another address ---------------------------------------------------------


async def test_a_sign_in_from_another_origin_is_told_what_is_wrong(client: Client) -> None:
    status, page = await sign_in(client, DEMO, Origin="http://localhost:8080")
    assert status == 403
    text = " ".join(page.split())
    assert "This form was sent from another address" in text
    assert f"its own address, {BASE}, but this one was sent from http://localhost:8080" in text
    assert "PUBLIC_BASE_URL" in text
    assert "This form has expired" not in text
    # The same form from the configured address signs in.
    status, _ = await sign_in(client, DEMO, Origin=BASE)
    assert status == 303


# -- HEAD on the PDFs ----------------------------------------------------------------------


async def test_head_on_pdf_urls_answers_like_get_without_the_body(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("FOX01")
    number = rig.sandbox.invoices("demo", "FOX01")[0].number
    for path in (
        f"/l/{token}/all.pdf",
        f"/l/{token}/unpaid.pdf",
        f"/l/{token}/invoice/{number}.pdf",
    ):
        got = await client.get(path)
        body = await got.read()
        head = await client.head(path)
        assert (head.status, got.status) == (200, 200), path
        assert await head.read() == b""
        for name in ("Content-Type", "Content-Length", "Content-Disposition"):
            assert head.headers[name] == got.headers[name], (path, name)
        assert int(head.headers["Content-Length"]) == len(body) > 0
    missing = await client.head(f"/l/{token}/invoice/99999999.pdf")
    assert missing.status == 404
    # Only the GETs were downloads.
    downloads = [e for e in await rig.core.store.activity.page("demo") if e.kind == PDF_DOWNLOADED]
    assert len(downloads) == 3


# -- the bot page tells the truth ----------------------------------------------------------


async def test_the_bot_page_says_when_a_stored_secret_no_longer_opens(
    rig: WebRig, client: Client
) -> None:
    # Sealed with a key the server no longer holds (retired by hand, or another deployment's).
    gone = Keyring.generate(7)
    retired = AccountSettings(rig.db, gone)
    await retired.set_bot_credentials("demo", DEMO)
    await retired.set_relay_password("demo", "relay-secret")
    await Mailboxes(rig.db, gone).set_password("demo", "imap-secret")
    assert (await sign_in(client, DEMO))[0] == 303

    page = " ".join((await (await client.get("/settings/bot")).text()).split())
    assert "The saved password can no longer be read" in page
    assert "The saved relay password can no longer be read" in page
    assert "The saved IMAP password can no longer be read" in page
    assert "•••• saved" not in page

    # Entered again, it is saved — and said to be.
    await rig.core.store.accounts.set_bot_credentials("demo", DEMO)
    await rig.core.store.accounts.set_relay_password("demo", "relay-secret")
    await rig.core.store.mailboxes.set_password("demo", "imap-secret")
    page = await (await client.get("/settings/bot")).text()
    assert "Password: •••• saved" in page and "Relay password: •••• saved" in page
    assert "IMAP password: •••• saved" in page
    assert "can no longer be read" not in page
