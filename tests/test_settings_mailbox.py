"""The bot page's IMAP fieldset over real sockets: what the accountant types is saved, the
password sealed and never shown back, mistakes explained on the form, the reader's last
word shown."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from kashflow.sandbox import DEMO
from tests.support import WebRig, web_rig

Client = TestClient[Any, Any]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
IMAP_PASSWORD = "app-Password-kiwi-2026"

BOT_FORM = {
    "request_address": "invoices@northwind-studio.example",
    "reply_from": "",
    "default_scope": "unpaid",
    "unknown_sender": "ignore",
    "per_customer_limit": "3",
    "global_limit": "60",
    "max_attachment_mb": "10",
    "relay_host": "",
    "relay_port": "587",
    "relay_security": "starttls",
    "relay_username": "",
    "relay_password": "",
    "greeting": "",
    "intro": "",
    "sign_off": "",
    "action": "save",
}
IMAP_FORM = {
    "imap_host": "imap.gmail.com",
    "imap_port": "993",
    "imap_security": "ssl",
    "imap_username": "invoices@northwind-studio.example",
    "imap_password": IMAP_PASSWORD,
    "imap_folder": "Invoice requests",
    "imap_done_folder": "Answered",
}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    # Plain http, as the settings harness: a secure cookie would not come back over it.
    async with web_rig(tmp_path, core_config={"public_base_url": "http://settings.test"}) as built:
        # The operator vouches for the firm's mail domain (`accounts allow-domain`).
        await built.core.store.domains.mark_proved("demo", "northwind-studio.example", "operator")
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(rig.app)
    token = await csrf(client, "/settings/login")
    signed_in = await client.post(
        "/settings/login",
        data={"csrf": token, "username": DEMO.username, "password": DEMO.password},
        allow_redirects=False,
    )
    assert signed_in.status == 303
    return client


async def csrf(client: Client, path: str) -> str:
    match = _CSRF.search(await (await client.get(path)).text())
    assert match is not None
    return match[1]


async def save(client: Client, **fields: str) -> tuple[int, str]:
    token = await csrf(client, "/settings/bot")
    response = await client.post(
        "/settings/bot", data={"csrf": token, **BOT_FORM, **IMAP_FORM, **fields}
    )
    return response.status, await response.text()


async def test_the_mailbox_is_saved_with_its_password_sealed_and_never_shown(
    rig: WebRig, client: Client
) -> None:
    status, page = await save(client)

    assert status == 200 and "The bot settings are saved." in page
    saved = await rig.core.store.mailboxes.get("demo")
    assert (saved.host, saved.port, saved.security) == ("imap.gmail.com", 993, "ssl")
    assert (saved.folder, saved.done_folder) == ("Invoice requests", "Answered")
    assert await rig.core.store.mailboxes.password("demo") == IMAP_PASSWORD
    assert IMAP_PASSWORD not in page
    assert "IMAP password: •••• saved" in page
    assert 'value="Invoice requests"' in page

    # Saving again with the password field empty keeps it; the box removes it.
    await save(client, imap_password="")
    assert await rig.core.store.mailboxes.password("demo") == IMAP_PASSWORD
    await save(client, imap_password="", imap_forget_password="on", imap_host="")
    assert await rig.core.store.mailboxes.password("demo") is None


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"imap_security": "none"}, "imap_security", "only allowed for a server on this machine"),
        ({"imap_port": "0"}, "imap_port", "IMAP port must be a whole number from 1 to 65535"),
        ({"imap_host": "imap gmail com"}, "imap_host", "is not a valid host name"),
        (
            {"imap_done_folder": "invoice requests"},
            "imap_done_folder",
            "another folder than the one read",
        ),
        ({"imap_username": ""}, "imap_username", "Give the IMAP username"),
        ({"imap_password": "x" * 1025}, "imap_password", "at most 1024 characters"),
    ],
    ids=["plain-imap-remote", "bad-port", "bad-host", "same-folder", "no-username", "long-pw"],
)
async def test_mailbox_mistakes_are_explained_on_the_form(
    rig: WebRig, client: Client, fields: dict[str, str], field: str, message: str
) -> None:
    status, page = await save(client, **fields)

    assert status == 400
    assert message in page
    # The field it is about is marked and described by the message.
    marked = re.search(rf'<[^>]*\bid="{field}"[^>]*>', page)
    assert marked is not None
    assert 'aria-invalid="true"' in marked[0]
    assert f'aria-describedby="{field}-error' in marked[0]
    assert f'id="{field}-error"' in page
    assert 'value="invoices@northwind-studio.example"' in page  # what was typed is kept
    assert IMAP_PASSWORD not in page
    # Nothing of the form is saved: not the mailbox, its password, nor the bot settings.
    assert (await rig.core.store.mailboxes.get("demo")).host == ""
    assert await rig.core.store.mailboxes.password("demo") is None
    saved = await rig.core.store.accounts.get("demo")
    assert (saved.request_address, saved.default_scope) == ("", "all")


async def test_the_readers_last_word_is_shown(rig: WebRig, client: Client) -> None:
    await save(client)
    await rig.core.store.mailboxes.record_status(
        "demo", "Could not read the mailbox: could not sign in: the server said 'NO'"
    )
    page = await (await client.get("/settings/bot")).text()

    assert "Could not read the mailbox: could not sign in" in page


async def test_a_refused_bot_setting_stores_no_password(rig: WebRig, client: Client) -> None:
    status, page = await save(
        client, per_customer_limit="5", global_limit="2", relay_password="relay-Secret-fig"
    )

    assert status == 400
    assert "The per-customer limit cannot be higher than the overall limit." in page
    # The passwords typed beside the refused setting are not kept either.
    assert await rig.core.store.accounts.relay_password("demo") is None
    assert await rig.core.store.mailboxes.password("demo") is None
    assert (await rig.core.store.accounts.get("demo")).request_address == ""
