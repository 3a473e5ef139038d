"""The client's side in Debian's chromium: a phone (390 px), a desktop (1280 px) and a
desktop at 200 % zoom; no sideways scrolling, the first invoice on the first screen, the
220-invoice customer in a few screens, the keyboard, and axe-core's WCAG 2.2 AA rules;
and the bot's reply read as a phone's mail app shows it.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Browser, Page, ViewportSize, expect

from permalink.business import clean_logo
from tests.support import WebRig, web_rig
from tests.support.axe import axe_violations
from tests.support.bot import MakeRig, request_mail
from tests.support.browser import chromium, serve
from web.security import RedactingAccessLogger

pytestmark = pytest.mark.browser

#: (name, viewport, device scale): 200 % zoom of a 1280x800 window is a 640x400 CSS viewport.
SCREENS: list[tuple[str, ViewportSize, int]] = [
    ("phone", {"width": 390, "height": 844}, 3),
    ("desktop", {"width": 1280, "height": 800}, 1),
    ("zoom200", {"width": 640, "height": 400}, 2),
]
#: How many screens the 220-invoice customer's page may take (seven still to pay, the
#: paid history folded by year, the calendar offer): a 400 px tall zoomed window holds
#: little of anything.
MOST_SCREENS = {"phone": 3, "desktop": 2.25, "zoom200": 6}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path) as built:
        business = built.core.store.business
        await business.update(
            "demo",
            bank_name="Barclays Bank UK PLC",
            account_name="Northwind Studio Ltd",
            sort_code="200000",
            account_number="55779911",
            iban="GB29NWBK60161331926819",
            bic="NWBKGB2L",
            pay_url="https://pay.northwind.example/",
        )
        out = io.BytesIO()
        Image.new("RGB", (300, 100), (29, 79, 145)).save(out, format="PNG")
        await business.set_logo("demo", clean_logo(out.getvalue()))
        yield built


@pytest.fixture
async def site(rig: WebRig) -> AsyncIterator[str]:
    async with serve(rig.app, access_log_class=RedactingAccessLogger) as base_url:
        yield base_url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def open_page(browser: Browser, url: str, screen: ViewportSize, scale: int) -> Page:
    context = await browser.new_context(
        viewport=screen,
        device_scale_factor=scale,
        bypass_csp=True,  # for axe only
    )
    page = await context.new_page()
    response = await page.goto(url)
    assert response is not None and response.status == 200
    return page


async def sideways(page: Page) -> int:
    overflow: int = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return overflow


@pytest.mark.parametrize(("name", "screen", "scale"), SCREENS, ids=[s[0] for s in SCREENS])
async def test_the_long_history_fits_every_screen(
    rig: WebRig, site: str, browser: Browser, name: str, screen: ViewportSize, scale: int
) -> None:
    page = await open_page(browser, f"{site}/l/{rig.mint('ACME01')}", screen, scale)
    assert await sideways(page) <= 0, f"the page scrolls sideways on the {name} screen"
    first = page.locator("table.invoices tbody tr").first.locator(".c-invoice a")
    await expect(first).to_have_text("Invoice 1251")
    # The first invoice's name is read without scrolling, even in a 400 px tall window.
    bottom = await first.evaluate("link => link.getBoundingClientRect().bottom")
    assert bottom <= screen["height"], f"the first invoice ends at {bottom}px on {name}"
    height = await page.evaluate("document.documentElement.scrollHeight")
    assert height <= MOST_SCREENS[name] * screen["height"], f"{height}px tall on {name}"
    # Sorting and views are links: following one keeps the page a page.
    await page.get_by_role("link", name="Overdue").first.click()
    await page.wait_for_url("**view=overdue")
    assert await sideways(page) <= 0
    await page.context.close()


AXE_CASES = [
    *((what, *screen) for what in ("list", "credit", "invoice") for screen in SCREENS),
    ("german", *SCREENS[0]),
    ("error", *SCREENS[0]),
]


@pytest.mark.parametrize(
    ("what", "name", "screen", "scale"), AXE_CASES, ids=[f"{c[0]}-{c[1]}" for c in AXE_CASES]
)
async def test_no_wcag_aa_violations(
    rig: WebRig,
    site: str,
    browser: Browser,
    what: str,
    name: str,
    screen: ViewportSize,
    scale: int,
) -> None:
    invoice = rig.sandbox.invoices("demo", "FOX01")[0].number
    await rig.core.store.business.set_customer_language("demo", "CORV01", "de")
    path = {
        "list": f"/l/{rig.mint('ACME01')}",
        "credit": f"/l/{rig.mint('DUNE01', 'unpaid')}",
        "invoice": f"/l/{rig.mint('FOX01', f'invoice:{invoice}')}",
        "german": f"/l/{rig.mint('CORV01')}",
        "error": "/l/not-a-link",
    }[what]
    context = await browser.new_context(viewport=screen, device_scale_factor=scale, bypass_csp=True)
    page = await context.new_page()
    await page.goto(site + path)
    if what == "list":
        await page.locator("details.year summary").first.click()  # an open year too
    assert await axe_violations(page) == []
    assert await sideways(page) <= 0
    await context.close()


async def test_a_keyboard_reaches_the_views_search_sorting_and_downloads(
    rig: WebRig, site: str, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(f"{site}/l/{rig.mint('ACME01')}")
    reached: list[str] = []
    for _ in range(40):
        await page.keyboard.press("Tab")
        label = await page.evaluate(
            "() => (document.activeElement.getAttribute('aria-label') || "
            "document.activeElement.textContent || document.activeElement.id || '').trim()"
        )
        reached.append(" ".join(label.split()))
    assert reached[0] == "Skip to content"
    for wanted in (
        "Download all as one PDF",
        "Download the unpaid ones as one PDF",
        "Pay online",
        "Unpaid (7)",
        "find",
        "Find",
        "Invoice",
        "Invoice 1251",
    ):
        assert any(item == wanted or item.startswith(wanted + " ") for item in reached), wanted
    focused = page.locator(":focus")
    assert await focused.evaluate("el => getComputedStyle(el).outlineStyle") == "solid"
    # Search from the keyboard alone.
    await page.get_by_label("Find an invoice by number").focus()
    await page.keyboard.type("1251")
    await page.keyboard.press("Enter")
    await expect(page.locator("table.invoices tbody tr")).to_have_count(1)
    # A folded year opens from the keyboard.
    await page.goto(f"{site}/l/{rig.mint('ACME01')}")
    summary = page.locator("details.year summary").first
    await summary.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("details.year").first).to_have_attribute("open", "")
    await page.context.close()


async def test_on_a_phone_the_payment_details_unfold_with_a_tap(
    rig: WebRig, site: str, browser: Browser
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    page = await context.new_page()
    await page.goto(f"{site}/l/{rig.mint('IVY01')}")
    sort_code = page.get_by_text("20-00-00")
    await expect(sort_code).to_be_hidden()
    await page.get_by_text("How to pay").tap()
    await expect(sort_code).to_be_visible()
    await expect(page.locator("img.logo")).to_be_visible()
    await context.close()


async def test_the_reply_reads_on_a_phone(make_rig: MakeRig, browser: Browser) -> None:
    bot = await make_rig(default_scope="unpaid")
    await bot.core.store.business.update(
        "demo", bank_name="Barclays Bank UK PLC", sort_code="200000", account_number="55779911"
    )
    await bot.send(request_mail("Please send my unpaid invoices"))
    [reply] = await bot.capture.wait_for(1)
    part = reply.parsed().get_body(preferencelist=("html",))
    assert isinstance(part, EmailMessage)
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True
    )
    page = await context.new_page()
    await page.set_content(str(part.get_content()))
    assert await sideways(page) <= 0, "the reply scrolls sideways on a phone"
    owed = sum((r.outstanding for r in bot.sandbox.invoices("demo", "ACME01")), Decimal(0))
    amount = page.get_by_text(f"£{owed:,.2f}", exact=True)
    button = page.locator('a[href*="/l/"]')
    await expect(button).to_have_count(1)  # one button to the link
    for what, element in (("the amount to pay", amount), ("the link's button", button)):
        bottom = await element.evaluate("el => el.getBoundingClientRect().bottom")
        assert bottom <= 844, f"{what} ends at {bottom}px, below the first screen"
    assert await axe_violations(page) == []
    await context.close()
