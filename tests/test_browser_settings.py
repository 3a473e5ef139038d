"""The settings pages in a real browser (Debian's chromium): sign in, make a link, open it,
revoke it and see it refused; set up the bot and send the test email into the capture.

The app is served on a port bound before it is built, so its public base URL — which the
Origin check and every minted link use — is the address the browser really talks to.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from bot.capture import CaptureServer
from kashflow.client import KashFlow
from permalink.db import open_database
from permalink.keyring import Keyring
from tests.support.browser import chromium, watch_origins
from tests.support.core import make_core
from web.app import create_app, runner

pytestmark = pytest.mark.browser


@dataclass
class Served:
    base: str
    capture: CaptureServer


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def served(kashflow: KashFlow, tmp_path: Path) -> AsyncIterator[Served]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    db = open_database(None, tmp_path)
    core = make_core(db, Keyring.generate(), kashflow, public_base_url=base, relay_timeout=5.0)
    # The operator vouches for the demo firm's mail domain (`accounts allow-domain`).
    await core.store.domains.mark_proved("demo", "northwind-studio.example", "operator")
    app = create_app(core)
    capture = CaptureServer(tmp_path / "outbox")
    await capture.start()
    app_runner = runner(app)
    await app_runner.setup()
    await web.SockSite(app_runner, sock).start()
    try:
        yield Served(base, capture)
    finally:
        await app_runner.cleanup()
        await capture.close()
        core.close()
        db.close()


async def sign_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/settings/login")
    await page.get_by_label("KashFlow username").fill("demo")
    await page.get_by_label("API password").fill("demo-api-pass")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Customers")).to_be_visible()


async def test_make_open_revoke_a_link_in_the_browser(browser: Browser, served: Served) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    watch = watch_origins(page, served.base)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(page, served.base)

    await page.get_by_label("Find a customer by name, code or email").fill("foxglove")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("row")).to_have_count(2)  # the header and Foxglove
    await page.get_by_role("link", name="Make a link for Foxglove Interiors").click()
    await page.get_by_label("Unpaid invoices only").check()
    await page.get_by_label("Expires after (days)").fill("30")
    await page.get_by_role("button", name="Make the link").click()

    field = page.get_by_label("Link", exact=True)
    link = await field.input_value()
    assert link.startswith(f"{served.base}/l/")
    copy = page.get_by_role("button", name="Copy")
    await expect(copy).to_be_visible()  # the script reveals it
    await copy.click()
    await expect(page.locator(".settings-copy-status")).not_to_be_empty()

    client = await context.new_page()
    await client.goto(link)
    await expect(client.get_by_text("Foxglove Interiors").first).to_be_visible()

    await page.get_by_role("link", name="Links").click()
    await expect(page.get_by_text("active", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Revoke").first.click()
    await expect(page.get_by_text("The link is revoked")).to_be_visible()
    await expect(page.get_by_text("revoked", exact=True)).to_be_visible()

    await client.goto(link)
    await expect(client.get_by_role("heading", name="This link is not valid")).to_be_visible()
    assert watch.foreign == []
    assert errors == []
    await context.close()


async def test_set_up_the_bot_and_send_the_test_email(browser: Browser, served: Served) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, served.base)
    await page.get_by_role("link", name="Mail bot").click()

    await page.get_by_label("The bot answers requests").check()
    await page.get_by_label("Request address").fill("invoices@northwind-studio.example")
    await page.get_by_label("unpaid invoices").check()
    await expect(page.get_by_label("Use my credentials for the bot")).to_be_checked()
    await page.get_by_label("Relay host").fill("127.0.0.1")
    await page.get_by_label("Port", exact=True).fill(str(served.capture.port))
    await page.get_by_label("None (only for a relay on this machine)").check()
    await page.get_by_label("Greeting").fill("Dear client,")
    # The preview follows the wording as it is typed.
    await expect(page.locator('[data-part="greeting"]')).to_have_text("Dear client,")
    await page.get_by_role("button", name="Save the bot settings").click()
    await expect(page.get_by_text("The bot settings are saved.")).to_be_visible()
    await expect(page.get_by_text("Password: •••• saved")).to_be_visible()
    await expect(page.get_by_label("The bot answers requests")).to_be_checked()

    await page.get_by_label("Send it to").fill("hannah@northwind-studio.example")
    await page.get_by_role("button", name="Send a test email").click()
    await expect(page.get_by_text("The test email was handed to the relay.")).to_be_visible()
    (mail,) = await served.capture.wait_for(1)
    assert mail.rcpt_tos == ("hannah@northwind-studio.example",)
    assert mail.mail_from == "invoices@northwind-studio.example"
    await context.close()


async def test_settings_fit_a_phone_and_work_from_the_keyboard(
    browser: Browser, served: Served
) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 740})
    page = await context.new_page()
    await page.goto(f"{served.base}/settings/login")
    # Sign in with the keyboard alone: the username field starts focused.
    await expect(page.get_by_label("KashFlow username")).to_be_focused()
    await page.keyboard.type("demo")
    await page.keyboard.press("Tab")
    await page.keyboard.type("demo-api-pass")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Customers")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for path in ("/settings/customers", "/settings/links", "/settings/bot", "/settings/activity"):
        await page.goto(served.base + path)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways on a phone"
    await context.close()
