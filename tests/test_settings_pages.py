"""The settings pages over real sockets: sign-in, sessions, CSRF, links, the bot page, activity.

Every test runs the whole web application (resolver and settings) on loopback against
the sandbox KashFlow, with a capture SMTP server standing in for the outgoing relay.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.capture import CaptureServer
from bot.listener import ListenerSettings
from bot.service import BotService
from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, IPLOCKED, NOAPI, SECOND, Sandbox
from permalink.core import Core
from permalink.db import Database, open_database
from permalink.keyring import Keyring
from permalink.presentation import invoice_row
from permalink.scopes import Scope
from tests.support.core import make_core
from tests.support.stores import both_stores
from web.app import create_app
from web.settings.auth import SETTINGS
from web.settings.session import COOKIE

BASE = "http://settings.test"
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LINK = re.compile(r'value="(http://settings\.test/l/[A-Za-z0-9_-]+)"')


class Clock:
    """A clock the test moves; starts at the real time (the sandbox's dates follow today)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    client: Client
    clock: Clock
    db: Database
    keyring: Keyring
    capture: CaptureServer
    sandbox: Sandbox
    core: Core

    async def csrf(self, path: str = "/settings/login") -> str:
        response = await self.client.get(path)
        match = _CSRF.search(await response.text())
        assert match is not None, f"no CSRF field on {path}"
        return match.group(1)

    async def sign_in(
        self, credentials: Credentials = DEMO, *, lands: str = "/settings/customers"
    ) -> None:
        self.client.session.cookie_jar.clear()
        token = await self.csrf()
        response = await self.client.post(
            "/settings/login",
            data={
                "csrf": token,
                "username": credentials.username,
                "password": credentials.password,
            },
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == lands

    async def post(self, path: str, data: dict[str, str], *, token: str | None = None) -> str:
        """POST a form from ``path``'s page with the session's token; returns the final page."""
        form = {"csrf": token or await self.csrf(path.rsplit("/", 1)[0] or path), **data}
        response = await self.client.post(path, data=form)
        return await response.text()

    async def make_link(self, code: str, **fields: str) -> str:
        page = f"/settings/customers/{code}"
        token = await self.csrf(page)
        response = await self.client.post(
            f"{page}/links", data={"csrf": token, "scope": "all", **fields}
        )
        assert response.status == 200, await response.text()
        match = _LINK.search(await response.text())
        assert match is not None
        return match.group(1)

    async def link_id(self, link: str) -> str:
        return (await self.core.open_link(link.rsplit("/", 1)[1])).link_id


@pytest.fixture
async def harness(
    aiohttp_client: ClientFactory,
    kashflow: KashFlow,
    sandbox: Sandbox,
    tmp_path: Path,
    store_url: str | None,
) -> AsyncIterator[Harness]:
    db = open_database(store_url, tmp_path)
    keyring = Keyring.generate()
    clock = Clock()
    core = make_core(db, keyring, kashflow, public_base_url=BASE, clock=clock, relay_timeout=5.0)
    # The operator vouches for the demo firm's mail domain (`accounts allow-domain`).
    await core.store.domains.mark_proved("demo", "northwind-studio.example", "operator")
    app = create_app(core)
    capture = CaptureServer(tmp_path / "outbox")
    await capture.start()
    client = await aiohttp_client(app)
    yield Harness(client, clock, db, keyring, capture, sandbox, core)
    await capture.close()
    core.close()
    db.close()


def path_of(url: str) -> str:
    assert url.startswith(BASE)
    return url[len(BASE) :]


# -- signing in ---------------------------------------------------------------------------


@both_stores
async def test_sign_in_lands_on_the_accounts_customers(harness: Harness) -> None:
    await harness.sign_in()
    page = await (await harness.client.get("/settings/customers")).text()
    assert "Northwind Studio Ltd" in page
    assert "Foxglove Interiors" in page
    assert "Signed in as <strong>demo</strong>" in page


async def test_session_cookie_is_sealed_http_only_strict_and_scoped(harness: Harness) -> None:
    token = await harness.csrf()
    response = await harness.client.post(
        "/settings/login",
        data={"csrf": token, "username": "demo", "password": "demo-api-pass"},
        allow_redirects=False,
    )
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/settings" in header
    assert "Secure" not in header  # the public URL is http
    assert "demo-api-pass" not in header and "demo" not in header.split(";")[0].split("=", 1)[1]


@pytest.mark.parametrize(
    ("credentials", "status", "advice"),
    [
        (Credentials("demo", "wrong"), 401, "did not accept that username and password"),
        (NOAPI, 403, "tick “Enable SOAP API”"),
        (IPLOCKED, 403, "add 127.0.0.1 to the allowed addresses"),
    ],
    ids=["wrong-password", "api-disabled", "ip-not-authorised"],
)
async def test_each_sign_in_failure_says_what_to_do_in_kashflow(
    harness: Harness, credentials: Credentials, status: int, advice: str
) -> None:
    token = await harness.csrf()
    response = await harness.client.post(
        "/settings/login",
        data={"csrf": token, "username": credentials.username, "password": credentials.password},
    )
    page = await response.text()
    assert response.status == status
    assert advice in page
    assert "Apps → API Settings" in page
    assert credentials.password not in page


async def test_kashflow_down_at_sign_in_says_try_again(harness: Harness) -> None:
    token = await harness.csrf()
    harness.sandbox.faults.http_500 = True
    response = await harness.client.post(
        "/settings/login", data={"csrf": token, "username": "demo", "password": "demo-api-pass"}
    )
    assert response.status == 503
    assert "not answering right now" in await response.text()


@both_stores
async def test_repeated_wrong_passwords_are_slowed_down_with_429(harness: Harness) -> None:
    token = await harness.csrf()
    wrong = {"csrf": token, "username": "demo", "password": "nope"}
    for _ in range(6):
        response = await harness.client.post("/settings/login", data=wrong)
        assert response.status == 401
    response = await harness.client.post(
        "/settings/login", data={**wrong, "password": "demo-api-pass"}
    )
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    page = await response.text()
    assert "Too many sign-ins with a wrong password" in page
    assert 'value="demo"' in page  # the form is back, with the username kept
    # Once the wait is over, the right password works again.
    harness.clock.now += 3600
    fresh = {"csrf": await harness.csrf(), "username": "demo", "password": "demo-api-pass"}
    response = await harness.client.post("/settings/login", data=fresh, allow_redirects=False)
    assert response.status == 303


async def test_sign_in_form_refuses_a_post_without_its_token(harness: Harness) -> None:
    await harness.csrf()
    response = await harness.client.post(
        "/settings/login", data={"username": "demo", "password": "demo-api-pass"}
    )
    assert response.status == 403
    assert "This form has expired" in await response.text()


@both_stores
async def test_sign_out_ends_the_session(harness: Harness) -> None:
    await harness.sign_in()
    token = await harness.csrf("/settings/links")
    response = await harness.client.post("/settings/logout", data={"csrf": token})
    assert "You are signed out." in await response.text()
    response = await harness.client.get("/settings/links", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/settings/login")


# -- sessions and forgery ----------------------------------------------------------------


async def test_an_expired_session_goes_back_to_sign_in(harness: Harness) -> None:
    await harness.sign_in()
    assert (await harness.client.get("/settings/links", allow_redirects=False)).status == 200
    harness.clock.now += 8 * 3600 + 1
    response = await harness.client.get("/settings/links", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/settings/login?notice=expired"
    page = await (await harness.client.get("/settings/login?notice=expired")).text()
    assert "Your session ended" in page


async def test_a_tampered_cookie_goes_back_to_sign_in(harness: Harness) -> None:
    await harness.sign_in()
    jar = harness.client.session.cookie_jar
    value = next(c.value for c in jar if c.key == COOKIE)
    flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
    jar.clear()
    jar.update_cookies({COOKIE: flipped}, harness.client.make_url("/settings/"))
    response = await harness.client.get("/settings/customers", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/settings/login")


@pytest.mark.parametrize("token", ["", "not-the-token"], ids=["missing", "wrong"])
async def test_a_form_without_the_sessions_token_is_refused(harness: Harness, token: str) -> None:
    await harness.sign_in()
    link = await harness.make_link("FOX01")
    page = await (await harness.client.get("/settings/links")).text()
    link_id = re.search(r"/settings/links/([0-9a-f]+)/revoke", page)
    assert link_id is not None
    data = {"csrf": token} if token else {}
    response = await harness.client.post(f"/settings/links/{link_id.group(1)}/revoke", data=data)
    assert response.status == 403
    assert "This form has expired" in await response.text()
    # Nothing happened: the link still opens.
    assert (await harness.client.get(path_of(link))).status == 200


async def test_a_form_from_another_origin_is_refused(harness: Harness) -> None:
    await harness.sign_in()
    link = await harness.make_link("FOX01")
    harness.clock.now += 1  # "made before now": the revocation cut-off lies after the link
    token = await harness.csrf("/settings/revoke-all")
    response = await harness.client.post(
        "/settings/revoke-all",
        data={"csrf": token, "confirm": "revoke-all"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status == 403
    # The refused forms changed nothing: the link still opens and is listed as active.
    # Under the settings pages' Referrer-Policy (same-origin) our own forms name our
    # origin; "null" comes only from a sandboxed frame or a data: page.
    response = await harness.client.post(
        "/settings/revoke-all",
        data={"csrf": token, "confirm": "revoke-all"},
        headers={"Origin": "null"},
    )
    assert response.status == 403
    assert (await harness.client.get(path_of(link))).status == 200
    links = await (await harness.client.get("/settings/links")).text()
    assert links.count('class="settings-status settings-status-active">active<') == 1
    response = await harness.client.post(
        "/settings/revoke-all",
        data={"csrf": token, "confirm": "revoke-all"},
        headers={"Origin": BASE},
    )
    assert response.status == 200
    assert "Every link of this account made before now is revoked." in await response.text()
    assert (await harness.client.get(path_of(link))).status == 404


# -- customers and links -----------------------------------------------------------------


async def test_customers_are_searched_by_name_code_or_email(harness: Harness) -> None:
    await harness.sign_in()
    by_name = await (await harness.client.get("/settings/customers?q=foxglove")).text()
    assert "Foxglove Interiors" in by_name and "Granite Row Builders" not in by_name
    by_email = await (await harness.client.get("/settings/customers?q=graniterow.example")).text()
    assert "Granite Row Builders" in by_email and "Foxglove Interiors" not in by_email
    by_code = await (await harness.client.get("/settings/customers?q=IVY01")).text()
    assert "Ivy Lane Dental" in by_code


@both_stores
async def test_make_open_revoke_and_the_resolver_refuses_at_once(harness: Harness) -> None:
    await harness.sign_in()
    link = await harness.make_link("FOX01", expires_days="30")
    opened = await harness.client.get(path_of(link))
    assert opened.status == 200
    assert "Foxglove Interiors" in await opened.text()

    page = await (await harness.client.get("/settings/links")).text()
    assert "Foxglove Interiors" in page and "active" in page
    assert path_of(link).removeprefix("/l/") not in page  # never the token
    link_id = re.search(r"/settings/links/([0-9a-f]+)/revoke", page)
    assert link_id is not None
    token = _CSRF.search(page)
    assert token is not None
    response = await harness.client.post(
        f"/settings/links/{link_id.group(1)}/revoke", data={"csrf": token.group(1)}
    )
    assert "Foxglove Interiors (FOX01) is revoked" in await response.text()

    refused = await harness.client.get(path_of(link))
    assert refused.status == 404
    assert "This link is not valid" in await refused.text()


async def test_a_one_invoice_link_shows_that_invoice(harness: Harness) -> None:
    await harness.sign_in()
    number = harness.sandbox.invoices("demo", "FOX01")[0].number
    link = await harness.make_link("FOX01", scope="invoice", invoice=str(number))
    page = await (await harness.client.get(path_of(link))).text()
    assert str(number) in page
    bad = await harness.client.post(
        "/settings/customers/FOX01/links",
        data={"csrf": await harness.csrf("/settings/customers/FOX01"), "scope": "invoice"},
    )
    assert bad.status == 400
    assert "Pick the invoice the link should show." in await bad.text()


@both_stores
async def test_revoke_all_asks_first_then_stops_every_link(harness: Harness) -> None:
    await harness.sign_in()
    first = await harness.make_link("FOX01")
    second = await harness.make_link("GRAN01", scope="unpaid")
    harness.clock.now += 1  # links made in the very second of the cut-off survive it
    page = await (await harness.client.get("/settings/revoke-all")).text()
    assert "Revoke all links?" in page
    token = _CSRF.search(page)
    assert token is not None
    unconfirmed = await harness.client.post("/settings/revoke-all", data={"csrf": token.group(1)})
    assert unconfirmed.status == 400
    assert (await harness.client.get(path_of(first))).status == 200
    done = await harness.client.post(
        "/settings/revoke-all", data={"csrf": token.group(1), "confirm": "revoke-all"}
    )
    assert "revoked" in await done.text()
    for link in (first, second):
        assert (await harness.client.get(path_of(link))).status == 404
    # A link made afterwards works.
    harness.clock.now += 1
    fresh = await harness.make_link("FOX01")
    assert (await harness.client.get(path_of(fresh))).status == 200


@both_stores
async def test_accounts_never_see_or_revoke_each_others_links(harness: Harness) -> None:
    await harness.sign_in(DEMO)
    link = await harness.make_link("FOX01")
    page = await (await harness.client.get("/settings/links")).text()
    found = re.search(r"/settings/links/([0-9a-f]+)/revoke", page)
    assert found is not None
    demo_link_id = found.group(1)

    await harness.sign_in(SECOND)
    page = await (await harness.client.get("/settings/links")).text()
    assert "Foxglove" not in page and demo_link_id not in page
    customers = await (await harness.client.get("/settings/customers")).text()
    assert "Harbour &amp; Hill LLP" in customers and "Foxglove Interiors" not in customers
    token = _CSRF.search(page)
    assert token is not None
    response = await harness.client.post(
        f"/settings/links/{demo_link_id}/revoke", data={"csrf": token.group(1)}
    )
    assert response.status == 404
    assert (await harness.client.get("/settings/customers/FOX01")).status == 404
    activity = await (await harness.client.get("/settings/activity")).text()
    assert "Foxglove" not in activity
    assert (await harness.client.get(path_of(link))).status == 200


async def test_a_link_is_emailed_only_to_the_address_on_file(harness: Harness) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    link = await harness.make_link("FOX01")
    page = await (await harness.client.get("/settings/customers/FOX01")).text()
    found = re.search(r"link=([0-9a-f]{16})", page)
    assert found is not None
    link_id = found.group(1)
    page_token = await harness.csrf("/settings/customers/FOX01")
    response = await harness.client.post(
        "/settings/customers/FOX01/email", data={"csrf": page_token, "link": link_id}
    )
    assert "Emailed to ruth@foxglove.example." in await response.text()
    (mail,) = await harness.capture.wait_for(1)
    assert mail.rcpt_tos == ("ruth@foxglove.example",)
    assert str(mail.parsed()["From"]) == (
        "Northwind Studio Ltd <invoices@northwind-studio.example>"
    )  # the business's name, as on the bot's replies
    body = mail.parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
    sent = re.search(r"https?://\S+/l/\S+", body)
    assert sent is not None
    opened = await harness.core.open_link(sent.group(0).rsplit("/", 1)[1])
    assert (
        opened.link_id == link_id == (await harness.core.open_link(link.rsplit("/", 1)[1])).link_id
    )
    # Another customer's link, or a made-up one, is not sent.
    forged = await harness.client.post(
        "/settings/customers/GRAN01/email", data={"csrf": page_token, "link": link_id}
    )
    assert forged.status == 404
    assert len(harness.capture.messages) == 1


# -- the bot page ------------------------------------------------------------------------


async def _save_bot(harness: Harness, **overrides: str) -> tuple[int, str]:
    form = {
        "enabled": "on",
        "request_address": "invoices@northwind-studio.example",
        "reply_from": "",
        "default_scope": "unpaid",
        "unknown_sender": "ignore",
        "per_customer_limit": "3",
        "global_limit": "60",
        "max_attachment_mb": "10",
        "use_my_credentials": "on",
        "relay_host": "127.0.0.1",
        "relay_port": "2525",
        "relay_security": "none",
        "relay_username": "",
        "relay_password": "",
        "greeting": "Dear customer,",
        "intro": "Your invoices, as promised.",
        "sign_off": "Best wishes,\nNorthwind accounts",
        "action": "save",
    }
    form.update(overrides)
    token = await harness.csrf("/settings/bot")
    response = await harness.client.post("/settings/bot", data={"csrf": token, **form})
    return response.status, await response.text()


@both_stores
async def test_bot_settings_are_saved_and_shown(harness: Harness) -> None:
    await harness.sign_in()
    status, page = await _save_bot(harness)
    assert status == 200
    assert "The bot settings are saved." in page
    assert 'value="invoices@northwind-studio.example"' in page
    assert "Dear customer," in page
    settings = await harness.core.store.accounts.get("demo")
    assert settings.enabled and settings.default_scope == "unpaid"
    assert settings.has_bot_credentials


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"per_customer_limit": "100", "global_limit": "10"}, "cannot be higher than the overall"),
        ({"relay_host": ""}, "Set the outgoing mail relay before turning the bot on."),
        ({"request_address": "not an address"}, "is not a valid email address"),
        ({"relay_port": "99999"}, "relay port must be a whole number from 1 to 65535"),
        ({"max_attachment_mb": "lots"}, "whole number of megabytes"),
    ],
    ids=["limits", "no-relay", "bad-address", "bad-port", "bad-size"],
)
async def test_bot_settings_errors_are_shown_on_the_form(
    harness: Harness, overrides: dict[str, str], message: str
) -> None:
    await harness.sign_in()
    status, page = await _save_bot(harness, **overrides)
    assert status == 400
    assert message in page
    # What was typed is kept, so nothing needs typing again.
    assert "Your invoices, as promised." in page


@both_stores
async def test_secrets_are_never_rendered_back(harness: Harness) -> None:
    await harness.sign_in()
    status, _ = await _save_bot(
        harness, relay_username="mailer", relay_password="relay-Secret-42", action="save"
    )
    assert status == 200
    page = await (await harness.client.get("/settings/bot")).text()
    assert "relay-Secret-42" not in page
    assert "demo-api-pass" not in page
    assert "Relay password: •••• saved" in page
    assert "Password: •••• saved" in page
    accounts = harness.core.store.accounts
    assert await accounts.relay_password("demo") == "relay-Secret-42"
    # Saving again with the replace field empty keeps the stored password.
    await _save_bot(harness, relay_username="mailer")
    assert await accounts.relay_password("demo") == "relay-Secret-42"


async def test_a_wrong_bot_password_is_refused_and_not_stored(harness: Harness) -> None:
    await harness.sign_in()
    status, page = await _save_bot(harness, use_my_credentials="", bot_password="typo")
    assert status == 400
    assert "did not accept the bot&#39;s password" in page
    assert not (await harness.core.store.accounts.get("demo")).has_bot_credentials


async def test_preview_shows_the_real_reply_without_saving(harness: Harness) -> None:
    await harness.sign_in()
    token = await harness.csrf("/settings/bot")
    response = await harness.client.post(
        "/settings/bot",
        data={
            "csrf": token,
            "action": "preview",
            "greeting": "Ahoy there,",
            "intro": "",
            "sign_off": "",
        },
    )
    page = await response.text()
    # The text part of the real reply, as the client gets it: total, link, PDF, footer.
    text = page[page.index('class="settings-mail-text"') :]
    assert "Ahoy there," in text
    assert "To pay: £1,140.00" in text
    assert "All of them are attached as one PDF" in text
    assert "This is an automatic reply from Northwind Studio Ltd." in text
    # Each empty field shows the words it stands for.
    assert 'placeholder="Here are all your invoices from Northwind Studio Ltd."' in page
    # The HTML part is framed from its own address, as the typed words make it.
    frame = re.search(r'<iframe class="settings-mail-frame" src="([^"]+)"', page)
    assert frame is not None
    html = await harness.client.get(frame.group(1).replace("&amp;", "&"))
    assert html.status == 200 and "Ahoy there," in await html.text()
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert (
        await harness.core.store.accounts.get("demo")
    ).wording.greeting == ""  # a preview saves nothing: still the default words


async def test_the_test_email_lands_in_the_relay(harness: Harness) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    token = await harness.csrf("/settings/bot")
    response = await harness.client.post("/settings/bot/test-email", data={"csrf": token})
    assert "The test email was handed to the relay." in await response.text()
    (mail,) = await harness.capture.wait_for(1)
    assert mail.rcpt_tos == ("accounts@northwind-studio.example",)
    assert "Test message" in str(mail.parsed()["Subject"])
    # From the one identity the bot's replies and the emailed links use.
    assert str(mail.parsed()["From"]) == "Northwind Studio Ltd <invoices@northwind-studio.example>"

    typed = await harness.client.post(
        "/settings/bot/test-email", data={"csrf": token, "to": "me@example.org"}
    )
    assert typed.status == 200
    messages = await harness.capture.wait_for(2)
    assert messages[1].rcpt_tos == ("me@example.org",)
    activity = await (await harness.client.get("/settings/activity")).text()
    assert "Test email" in activity and "sent to me@example.org" in activity


async def test_a_relay_that_refuses_is_reported_on_the_page(harness: Harness) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    harness.capture.fail_with = (554, "5.7.1 Relaying denied")
    token = await harness.csrf("/settings/bot")
    response = await harness.client.post("/settings/bot/test-email", data={"csrf": token})
    assert response.status == 400
    assert "The email was not sent" in await response.text()


@both_stores
async def test_the_bot_page_lists_only_this_accounts_stuck_mail(harness: Harness) -> None:
    await harness.sign_in()
    await _save_bot(harness)
    spool = harness.core.store.spool
    ours = await spool.enqueue(
        peer="127.0.0.1",
        mail_from="ruth@foxglove.example",
        rcpt_tos=["invoices@northwind-studio.example"],
        raw=b"Subject: x\r\n\r\nx\r\n",
        account="demo",
    )
    theirs = await spool.enqueue(
        peer="127.0.0.1",
        mail_from="someone@elsewhere.example",
        rcpt_tos=["office@harbourhill.example"],
        raw=b"Subject: y\r\n\r\ny\r\n",
        account="second",
    )
    await spool.park(ours, "KashFlow has no customer with this address")
    await spool.retry(theirs, "relay down", time.time() + 60)
    page = await (await harness.client.get("/settings/bot")).text()
    assert "ruth@foxglove.example" in page
    assert "KashFlow has no customer with this address" in page
    assert "someone@elsewhere.example" not in page


# -- activity ----------------------------------------------------------------------------


@both_stores
async def test_activity_is_paged_newest_first_and_per_account(harness: Harness) -> None:
    log = harness.core.store.activity
    for n in range(30):
        await log.record(
            "demo",
            kind="link_opened",
            outcome="ok",
            subject=f"Customer {n:02d}",
            at=1_700_000_000 + n,
        )
    await log.record("second", kind="bot_request", outcome="failed", subject="Other Co")
    await harness.sign_in()
    first = await (await harness.client.get("/settings/activity")).text()
    assert "Customer 29" in first and "Customer 05" in first and "Customer 04" not in first
    assert first.index("Customer 29") < first.index("Customer 28")
    assert "Other Co" not in first
    older = re.search(r'href="(/settings/activity\?before=\d+)"', first)
    assert older is not None
    second = await (await harness.client.get(older.group(1))).text()
    assert "Customer 04" in second and "Customer 00" in second and "Customer 05" not in second
    assert "?before=" not in second  # the last page has no "older" link


# -- no repeated actions, no dead ends ------------------------------------------------------

_FRAME = re.compile(r'<iframe class="settings-mail-frame" src="([^"]+)"')


async def test_a_form_answers_with_a_redirect_and_a_message_shown_once(harness: Harness) -> None:
    await harness.sign_in()
    form = {"csrf": await harness.csrf("/settings/customers/FOX01"), "once": "k" * 24}
    first = await harness.client.post(
        "/settings/customers/FOX01/links", data={**form, "scope": "unpaid"}, allow_redirects=False
    )
    assert first.status == 303
    location = first.headers["Location"]
    assert location.startswith("/settings/customers/FOX01?") and "/l/" not in location
    page = await (await harness.client.get(location)).text()
    assert "The link is made" in page and _LINK.search(page)
    reloaded = await (await harness.client.get(location)).text()
    assert "The link is made" not in reloaded  # the message was for once
    assert _LINK.search(reloaded)  # the link is still there to copy
    # The same form sent again (a double click, a resend) makes nothing new.
    again = await harness.client.post(
        "/settings/customers/FOX01/links", data={**form, "scope": "unpaid"}, allow_redirects=False
    )
    assert again.headers["Location"] == location
    assert await harness.core.store.links.count("demo") == 1


async def test_two_sends_at_once_of_one_form_email_the_client_once(harness: Harness) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    link_id = await harness.link_id(await harness.make_link("FOX01"))
    form = {
        "csrf": await harness.csrf("/settings/customers/FOX01"),
        "once": "e" * 24,
        "link": link_id,
    }
    pages = await asyncio.gather(
        *(harness.client.post("/settings/customers/FOX01/email", data=form) for _ in range(2))
    )
    # Both land on the same page; the browser shows the one it followed, with the result.
    assert pages[0].url == pages[1].url
    shown = [await response.text() for response in pages]
    assert any("Emailed to ruth@foxglove.example." in page for page in shown)
    await harness.capture.wait_for(1)
    assert len(harness.capture.messages) == 1


async def test_a_revoked_link_can_be_brought_back_for_a_while(harness: Harness) -> None:
    await harness.sign_in()
    link = await harness.make_link("FOX01")
    link_id = await harness.link_id(link)
    token = await harness.csrf("/settings/links")
    revoked = await (
        await harness.client.post(f"/settings/links/{link_id}/revoke", data={"csrf": token})
    ).text()
    assert f'action="/settings/links/{link_id}/restore"' in revoked
    assert (await harness.client.get(path_of(link))).status == 404
    undone = await (
        await harness.client.post(f"/settings/links/{link_id}/restore", data={"csrf": token})
    ).text()
    assert "Foxglove Interiors (FOX01) works again" in undone
    assert (await harness.client.get(path_of(link))).status == 200
    # Past the few minutes an undo lasts, it is refused and the link stays revoked.
    await harness.client.post(f"/settings/links/{link_id}/revoke", data={"csrf": token})
    harness.clock.now += 11 * 60
    late = await harness.client.post(f"/settings/links/{link_id}/restore", data={"csrf": token})
    assert late.status == 409
    assert "can no longer be brought back" in await late.text()
    assert (await harness.client.get(path_of(link))).status == 404


async def test_the_customer_page_shows_their_links_and_the_page_they_see(
    harness: Harness,
) -> None:
    await harness.sign_in()
    link = await harness.make_link("FOX01")
    link_id = await harness.link_id(link)
    assert (await harness.client.get(path_of(link))).status == 200  # the client opens it
    page = await (await harness.client.get("/settings/customers/FOX01")).text()
    assert "1 time" in page and "settings-status-active" in page and "all invoices" in page
    seen = await harness.client.get(f"/settings/links/{link_id}/view")
    text = await seen.text()
    assert seen.status == 200
    assert "Preview for you: this is the page Foxglove Interiors sees" in text
    record = await harness.core.store.links.get("demo", link_id)
    assert record is not None and record.opens == 1  # viewing it here is not an opening
    # The email is previewed as it will leave: its HTML part framed, its text part shown.
    shown = await (await harness.client.get(f"/settings/customers/FOX01?link={link_id}")).text()
    assert "Northwind Studio Ltd has sent you a link to all your invoices." in shown
    frame = _FRAME.search(shown)
    assert frame is not None
    html = await harness.client.get(frame.group(1))
    assert html.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "Open your invoices" in await html.text()
    assert len(harness.capture.messages) == 0  # a preview sends nothing


async def test_the_invoice_picker_writes_invoices_as_the_client_page_does(
    harness: Harness,
) -> None:
    await harness.sign_in()
    account = harness.core.kashflow(DEMO)
    customer = await account.customer_by_code("FOX01")
    invoice = (await account.invoices_for_customer(customer.id, lines=False))[0]
    row = invoice_row(invoice, date.fromtimestamp(harness.clock.now))
    label = f"{row.number} · {row.issued_text} · {row.total} · {row.status_label}"
    page = await (await harness.client.get("/settings/customers/FOX01")).text()
    assert f'<option value="{invoice.number}">{label}</option>' in page
    # What the picker holds after choosing a suggestion makes that invoice's link.
    link = await harness.make_link("FOX01", scope="invoice", invoice=label)
    assert (await harness.core.open_link(link.rsplit("/", 1)[1])).scope == Scope(
        "invoice", invoice.number
    )


async def test_a_refused_field_is_marked_and_tied_to_its_message(harness: Harness) -> None:
    await harness.sign_in()
    response = await harness.client.post(
        "/settings/customers/FOX01/links",
        data={
            "csrf": await harness.csrf("/settings/customers/FOX01"),
            "scope": "all",
            "expires_days": "0",
        },
    )
    page = await response.text()
    assert response.status == 400
    assert 'aria-invalid="true" aria-describedby="expires_days-error expires-help"' in page
    assert '<span id="expires_days-error" class="settings-field-error">The expiry must' in page
    assert 'tabindex="-1" data-focus' in page  # the result takes the focus
    assert 'value="0"' in page  # what was typed is kept


async def test_the_links_page_leads_with_the_customer_and_copies_and_resends(
    harness: Harness,
) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    link_id = await harness.link_id(await harness.make_link("GRAN01", scope="unpaid"))
    page = await (await harness.client.get("/settings/links")).text()
    row = page[page.index("<tbody>") :]
    assert row.index("Granite Row Builders") < row.index("unpaid invoices") < row.index("active")
    assert link_id not in row.split("data-copy-value", 1)[0]  # no hex id leads the row
    copied = re.search(r'data-copy-value="([^"]+)"', page)
    assert copied is not None and (await harness.client.get(path_of(copied.group(1)))).status == 200
    token = _CSRF.search(page)
    assert token is not None
    sent = await harness.client.post(
        f"/settings/links/{link_id}/email", data={"csrf": token.group(1)}
    )
    assert "Emailed to office@graniterow.example." in await sent.text()
    (mail,) = await harness.capture.wait_for(1)
    assert mail.rcpt_tos == ("office@graniterow.example",)


async def test_the_sign_in_page_stays_a_way_back_while_sign_in_is_paused(
    harness: Harness,
) -> None:
    token = await harness.csrf()
    for _ in range(7):
        response = await harness.client.post(
            "/settings/login", data={"csrf": token, "username": "demo", "password": "nope"}
        )
    assert response.status == 429
    page = await response.text()
    assert "KashFlow Permalink" in page and 'action="/settings/login"' in page
    later = await (await harness.client.get("/settings/login")).text()
    assert "Signing in from here is paused after too many wrong passwords" in later


async def test_activity_writes_a_customer_one_way(harness: Harness) -> None:
    await harness.sign_in()
    link = await harness.make_link("DUNE01")
    assert (await harness.client.get(path_of(link))).status == 200
    number = harness.sandbox.invoices("demo", "DUNE01")[0].number
    assert (await harness.client.get(path_of(link) + f"/invoice/{number}.pdf")).status == 200
    # A request the bot answers for the same customer, through a real bot on this core.
    accounts = harness.core.store.accounts
    await accounts.set_bot_credentials("demo", DEMO)
    await accounts.update(
        "demo",
        enabled=True,
        request_address="invoices@northwind-studio.example",
        relay_host="127.0.0.1",
        relay_port=harness.capture.port,
        relay_security="none",
    )
    service = BotService(harness.core, ListenerSettings(host="127.0.0.1", port=0), idle_s=3600)
    await service.start()
    try:
        raw = (
            b"From: Maggie <maggie@dunes.example>\r\n"
            b"To: invoices@northwind-studio.example\r\nSubject: Invoices\r\n"
            b"Message-ID: <dunes-1@dunes.example>\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease send our invoices.\r\n"
        )

        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", service.port, timeout=60) as smtp:
                smtp.sendmail("maggie@dunes.example", ["invoices@northwind-studio.example"], raw)

        await asyncio.to_thread(deliver)
        await service.worker.wait_for(lambda settled: len(settled) >= 1, 60)
    finally:
        await service.stop()

    events = await harness.core.store.activity.page("demo")
    kinds = {e.kind for e in events}
    assert kinds >= {"link_minted", "link_opened", "pdf_downloaded", "bot_request"}
    assert {e.subject for e in events} == {"Dunes & Daughters (DUNE01)"}
    page = await (await harness.client.get("/settings/activity")).text()
    assert "Dunes &amp; Daughters (DUNE01)" in page
    assert "DUNE01 (Dunes" not in page


async def test_a_stopped_reissue_goes_on_from_its_page(harness: Harness) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    await harness.make_link("FOX01")
    await harness.make_link("GRAN01")
    new = Credentials("demo", "new-api-pass")
    harness.sandbox.set_api_password("demo", new.password)
    await harness.sign_in(new, lands="/settings/reissue")
    token = _CSRF.search(await (await harness.client.get("/settings/reissue")).text())
    assert token is not None
    workers = harness.client.app[SETTINGS].workers

    core = harness.core
    real_send = core.send_for_account
    held, calls = asyncio.Event(), 0

    async def hold_then_stop(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await held.wait()  # the page is looked at while the worker is at it
            await real_send(*args, **kwargs)
            return
        # The process stops before the second client's email (a restart, say).
        raise asyncio.CancelledError

    with mock.patch.object(core, "send_for_account", hold_then_stop):
        started = await harness.client.post(
            "/settings/reissue", data={"csrf": token.group(1)}, allow_redirects=False
        )
        job_page = started.headers["Location"].split("?")[0]
        running = await (await harness.client.get(job_page)).text()
        assert "Working: 0 of 2 clients done." in running
        assert "data-running" in running
        assert "Go on where it stopped" not in running
        held.set()
        await asyncio.wait(list(workers), timeout=60)

    stopped = await (await harness.client.get(job_page)).text()
    assert "Stopped after 1 of 2 clients." in stopped and "data-running" not in stopped
    assert "Go on where it stopped" in stopped
    assert len(harness.capture.messages) == 1
    form = re.search(
        rf'action="{re.escape(job_page)}/continue".*?name="once" value="([^"]+)"', stopped, re.S
    )
    assert form is not None
    again = {"csrf": token.group(1), "once": form.group(1)}
    resumed = await harness.client.post(f"{job_page}/continue", data=again, allow_redirects=False)
    assert resumed.status == 303
    if workers:  # it may have finished already
        await asyncio.wait(list(workers), timeout=60)
    done = await (await harness.client.get(resumed.headers["Location"])).text()
    assert "The re-issue goes on where it stopped." in done
    assert "Finished: 2 of 2 clients done." in done
    mails = await harness.capture.wait_for(2)
    assert sorted(m.rcpt_tos for m in mails) == [
        ("office@graniterow.example",),
        ("ruth@foxglove.example",),
    ]

    # The same form sent again starts nothing and emails nobody.
    twice = await harness.client.post(f"{job_page}/continue", data=again, allow_redirects=False)
    assert twice.headers["Location"] == resumed.headers["Location"]
    assert not workers
    assert len(harness.capture.messages) == 2


async def test_after_a_password_change_one_step_re_issues_and_updates_the_bot(
    harness: Harness,
) -> None:
    await harness.sign_in()
    await _save_bot(harness, relay_port=str(harness.capture.port))
    old = [await harness.make_link("FOX01"), await harness.make_link("GRAN01", scope="unpaid")]
    new = Credentials("demo", "new-api-pass")
    harness.sandbox.set_api_password("demo", new.password)

    await harness.sign_in(new, lands="/settings/reissue")
    page = await (await harness.client.get("/settings/reissue")).text()
    assert "2 links no longer open" in page
    assert "Re-issue 2 links and email 2 clients" in page
    assert "The mail bot still keeps the earlier password" in page
    frame = _FRAME.search(page)
    assert frame is not None
    assert "has renewed the link" in await (await harness.client.get(frame.group(1))).text()

    token = _CSRF.search(page)
    assert token is not None
    started = await harness.client.post(
        "/settings/reissue", data={"csrf": token.group(1)}, allow_redirects=False
    )
    job_page = started.headers["Location"].split("?")[0]
    workers = harness.client.app[SETTINGS].workers
    await asyncio.wait_for(asyncio.gather(*workers), timeout=60)
    done = await (await harness.client.get(job_page)).text()
    assert "Finished: 2 of 2 clients done." in done
    mails = await harness.capture.wait_for(2)
    assert sorted(m.rcpt_tos for m in mails) == [
        ("office@graniterow.example",),
        ("ruth@foxglove.example",),
    ]
    for link in old:
        assert (await harness.client.get(path_of(link))).status == 404
    assert await harness.core.store.accounts.bot_credentials("demo") == new
    assert "no longer open" not in await (await harness.client.get("/settings/links")).text()
