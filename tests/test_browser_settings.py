"""The settings pages in a real browser (Debian's chromium): sign in, make a link, open it,
revoke it and see it refused; set up the bot and send the test email into the capture;
reload after every form and see nothing done twice; undo a revoke; and the whole re-issue
after a KashFlow password change, against the sandbox.

The app is served on a port bound before it is built, so its public base URL — which the
Origin check and every minted link use — is the address the browser really talks to.
"""

from __future__ import annotations

import io
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import Browser, Page, expect

from bot.capture import CaptureServer
from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, Sandbox
from permalink.core import Core
from permalink.db import open_database
from permalink.keyring import Keyring
from tests.support.browser import chromium, watch_origins
from tests.support.core import make_core
from web.app import create_app, runner

pytestmark = pytest.mark.browser
CHANGED = Credentials("demo", "changed-api-pass")


@dataclass
class Served:
    base: str
    capture: CaptureServer
    core: Core
    sandbox: Sandbox


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def served(kashflow: KashFlow, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Served]:
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
        yield Served(base, capture, core, sandbox)
    finally:
        await app_runner.cleanup()
        await capture.close()
        core.close()
        db.close()


async def sign_in(
    page: Page, base: str, credentials: Credentials = DEMO, *, lands: str = "Customers"
) -> None:
    await page.goto(f"{base}/settings/login")
    await page.get_by_label("KashFlow username").fill(credentials.username)
    await page.get_by_label("API password").fill(credentials.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name=lands)).to_be_visible()


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
    await expect(
        page.get_by_text("The link for Foxglove Interiors (FOX01) is revoked")
    ).to_be_visible()
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
    # The preview — the real reply — follows the wording as it is typed.
    await expect(page.locator("[data-mail-text]")).to_contain_text("Dear client,")
    reply = page.frame_locator(".settings-mail-frame")
    await expect(reply.get_by_text("Dear client,")).to_be_visible()
    await expect(reply.get_by_text("To pay", exact=True)).to_be_visible()
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
    for path in (
        "/settings/customers",
        "/settings/customers/ACME01",
        "/settings/links",
        "/settings/reissue",
        "/settings/bot",
        "/settings/business",
        "/settings/activity",
    ):
        await page.goto(served.base + path)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways on a phone"
    await context.close()


#: Each settings table's headings and buttons, and how many lines each is drawn on.
LINES_DRAWN = """() => [...document.querySelectorAll(
    '.settings-table thead th, .settings-table button')].map(el => {
  const style = getComputedStyle(el);
  const line = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
  const padding = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom)
    + parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth);
  return [el.textContent.trim(), el.getClientRects().length,
          (el.offsetHeight - padding) / line];
})"""


async def test_on_a_desktop_no_heading_or_button_breaks_inside_a_word(
    browser: Browser, served: Served
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await sign_in(page, served.base)
    await page.goto(f"{served.base}/settings/customers/FOX01")
    await page.get_by_role("button", name="Make the link").click()
    await expect(page.get_by_label("Link", exact=True)).to_be_visible()
    for path in ("/settings/customers", "/settings/links"):
        await page.goto(served.base + path)
        drawn = await page.evaluate(LINES_DRAWN)
        texts = [text for text, _, _ in drawn]
        assert texts, f"{path} has no table"
        if path == "/settings/links":
            assert any(text.startswith("Revoke") for text in texts), texts
        for text, boxes, lines in drawn:
            assert boxes == 1 and lines < 2, f"{text!r} on {path} is drawn on {lines:.1f} lines"
    await context.close()


async def set_up_the_bot(page: Page, served: Served) -> None:
    await page.goto(f"{served.base}/settings/bot")
    await page.get_by_label("Request address").fill("invoices@northwind-studio.example")
    await page.get_by_label("Relay host").fill("127.0.0.1")
    await page.get_by_label("Port", exact=True).fill(str(served.capture.port))
    await page.get_by_label("None (only for a relay on this machine)").check()
    await page.get_by_role("button", name="Save the bot settings").click()
    await expect(page.get_by_text("The bot settings are saved.")).to_be_visible()


async def test_reloading_after_any_form_repeats_nothing(browser: Browser, served: Served) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    store = served.core.store

    async def reload_shows_no_message(gone: str) -> None:
        await page.reload()
        await expect(page.get_by_text(gone)).to_have_count(0)

    await sign_in(page, served.base)
    await page.reload()
    await expect(page.get_by_role("heading", name="Customers")).to_be_visible()
    await set_up_the_bot(page, served)
    await reload_shows_no_message("The bot settings are saved.")

    await page.get_by_label("Send it to").fill("hannah@northwind-studio.example")
    await page.get_by_role("button", name="Send a test email").click()
    await expect(page.get_by_text("The test email was handed to the relay.")).to_be_visible()
    await reload_shows_no_message("The test email was handed to the relay.")
    assert len(served.capture.messages) == 1

    await page.goto(f"{served.base}/settings/customers/FOX01")
    await page.get_by_role("button", name="Make the link").click()
    await expect(page.get_by_text("The link is made")).to_be_visible()
    # The result takes the focus, so a screen reader reads it out.
    await expect(page.locator("[data-focus]")).to_be_focused()
    await reload_shows_no_message("The link is made")
    await expect(page.get_by_label("Link", exact=True)).to_have_value(re.compile("/l/"))
    assert await store.links.count("demo") == 1

    await page.get_by_role("button", name="Email it to ruth@foxglove.example").click()
    await expect(page.get_by_text("Emailed to ruth@foxglove.example.")).to_be_visible()
    await reload_shows_no_message("Emailed to ruth@foxglove.example.")
    assert len(served.capture.messages) == 2

    await page.goto(f"{served.base}/settings/links")
    await page.get_by_role("button", name="Revoke the link for Foxglove").click()
    await expect(page.get_by_text("is revoked")).to_be_visible()
    await reload_shows_no_message("is revoked")
    await page.get_by_role("button", name="Undo revoke").click()
    await expect(page.get_by_text("works again")).to_be_visible()
    await reload_shows_no_message("works again")
    kinds = [e.kind for e in await store.activity.page("demo")]
    assert kinds.count("link_revoked") == 1 and kinds.count("link_restored") == 1
    assert kinds.count("link_minted") == 1 and kinds.count("link_emailed") == 1

    await page.get_by_role("button", name=re.compile("Email again to Foxglove")).click()
    await expect(page.get_by_text("Emailed to ruth@foxglove.example.")).to_be_visible()
    await reload_shows_no_message("Emailed to ruth@foxglove.example.")
    assert len(served.capture.messages) == 3

    await page.get_by_role("link", name="Revoke all links of this account…").click()
    await page.get_by_label("Yes, stop every link of this account").check()
    await page.get_by_role("button", name="Revoke all links").click()
    revoked_all = "Every link of this account made before now is revoked."
    await expect(page.get_by_text(revoked_all)).to_be_visible()
    await reload_shows_no_message(revoked_all)
    events = await store.activity.page("demo")
    assert [e.subject for e in events if e.kind == "link_revoked"].count("all links") == 1

    await page.goto(f"{served.base}/settings/business")
    await page.get_by_label("Bank", exact=True).fill("Barclays Bank UK PLC")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_text("Saved: clients see these details")).to_be_visible()
    await reload_shows_no_message("Saved: clients see these details")
    assert (await store.business.get("demo")).payment.bank_name == "Barclays Bank UK PLC"

    image = io.BytesIO()
    Image.new("RGB", (300, 100), (20, 60, 140)).save(image, format="PNG")
    await page.get_by_label("Upload a PNG, JPEG, GIF or WebP image").set_input_files(
        {"name": "logo.png", "mimeType": "image/png", "buffer": image.getvalue()}
    )
    await page.get_by_role("button", name="Upload the logo").click()
    await expect(page.get_by_text("The logo is saved.")).to_be_visible()
    await reload_shows_no_message("The logo is saved.")
    await expect(page.get_by_alt_text("Your current logo")).to_be_visible()
    assert errors == []
    await context.close()


async def test_a_revoke_is_undone_and_copy_keeps_the_focus(
    browser: Browser, served: Served
) -> None:
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    await sign_in(page, served.base)
    await page.goto(f"{served.base}/settings/customers/GRAN01")
    await page.get_by_label("Unpaid invoices only").check()
    await page.get_by_role("button", name="Make the link").click()
    link = await page.get_by_label("Link", exact=True).input_value()

    await page.goto(f"{served.base}/settings/links")
    copy = page.get_by_role("button", name="Copy the link for Granite Row Builders")
    await copy.click()
    await expect(page.get_by_text("Copied.")).to_be_visible()
    await expect(copy).to_be_focused()  # not sent back into a field
    copied = await page.evaluate("navigator.clipboard.readText()")
    # Written again from the registry: other letters, the very same link.
    same = [await served.core.open_link(url.rsplit("/", 1)[1]) for url in (copied, link)]
    assert same[0].link_id == same[1].link_id

    await page.get_by_role("button", name="Revoke the link for Granite Row Builders").click()
    await expect(page.locator("[data-focus]")).to_be_focused()
    client = await context.new_page()
    await client.goto(link)
    await expect(client.get_by_role("heading", name="This link is not valid")).to_be_visible()
    await page.get_by_role("button", name="Undo", exact=True).click()
    await expect(page.get_by_text("works again")).to_be_visible()
    await client.goto(link)
    await expect(client.get_by_text("Granite Row Builders").first).to_be_visible()
    await context.close()


async def test_after_a_password_change_the_links_are_re_issued_in_one_step(
    browser: Browser, served: Served
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(page, served.base)
    await set_up_the_bot(page, served)
    await expect(page.get_by_text("Password: •••• saved")).to_be_visible()
    old = []
    for code in ("FOX01", "GRAN01", "IVY01"):
        await page.goto(f"{served.base}/settings/customers/{code}")
        await page.get_by_role("button", name="Make the link").click()
        old.append(await page.get_by_label("Link", exact=True).input_value())

    # In KashFlow, the accountant changes the API password; every link made with it stops.
    served.sandbox.set_api_password("demo", CHANGED.password)
    client = await context.new_page()
    await client.goto(old[0])
    await expect(client.get_by_role("heading", name="This link needs renewing")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, served.base, CHANGED, lands="After a KashFlow password change")
    await expect(page.get_by_role("heading", name="3 links no longer open")).to_be_visible()
    await expect(page.get_by_text("The mail bot still keeps the earlier password")).to_be_visible()
    preview = page.frame_locator(".settings-mail-frame")
    await expect(preview.get_by_text("has renewed the link")).to_be_visible()

    await page.get_by_role("button", name="Re-issue 3 links and email 3 clients").click()
    await expect(page.get_by_text("Finished: 3 of 3 clients done.")).to_be_visible(timeout=20_000)
    mails = await served.capture.wait_for(3)
    assert sorted(m.rcpt_tos for m in mails) == [
        ("office@graniterow.example",),
        ("practice@ivylane.example",),
        ("ruth@foxglove.example",),
    ]
    await page.reload()
    assert len(served.capture.messages) == 3  # a reload emails nobody again

    for link in old:
        await client.goto(link)
        await expect(client.get_by_role("heading", name="This link is not valid")).to_be_visible()
    body = mails[0].parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
    new_link = re.search(r"http://\S+/l/\S+", body)
    assert new_link is not None
    await client.goto(new_link.group(0))
    await expect(client.get_by_role("heading", name="This link is not valid")).to_have_count(0)
    kept = await served.core.store.accounts.bot_credentials("demo")
    assert kept == CHANGED
    assert errors == []
    await context.close()
