"""A client's permalink in a real browser: the list, the merged download, a phone screen.

Debian's chromium (through Playwright) opens the app served on a loopback TCP port, which
reads the sandbox KashFlow over HTTP: what is asserted is what a client would see.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, expect
from pypdf import PdfReader

from tests.support import WebRig, web_rig
from tests.support.browser import chromium, serve, watch_origins
from web.security import RedactingAccessLogger

pytestmark = pytest.mark.browser

FOOTER = re.compile(r"(?:Invoice|Credit note) (\d+)")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path) as built:
        yield built


@pytest.fixture
async def site(rig: WebRig) -> AsyncIterator[str]:
    async with serve(rig.app, access_log_class=RedactingAccessLogger) as base_url:
        yield base_url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def printed_numbers(data: bytes) -> list[int]:
    """The invoice named on each page, after the statement page when there is one."""
    pages = PdfReader(io.BytesIO(data)).pages
    if "Statement" in pages[0].extract_text():
        pages = pages[1:]
    return [int(FOOTER.findall(p.extract_text())[-1]) for p in pages]


async def test_client_sees_the_list_and_downloads_everything_as_one_pdf(
    rig: WebRig, site: str, browser: Browser, tmp_path: Path
) -> None:
    token = rig.mint("IVY01")
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    origins = watch_origins(page, site)

    response = await page.goto(f"{site}/l/{token}")
    assert response is not None and response.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your invoices")
    await expect(page.get_by_text("Ivy Lane Dental").first).to_be_visible()
    table = page.locator("main")
    await expect(table.locator("table.invoices tbody tr")).to_have_count(
        len(rig.sandbox.invoices("demo", "IVY01"))
    )
    listed = [
        int(n.split()[-1])
        for n in await table.locator("table.invoices tbody th[scope=row]").all_inner_texts()
    ]

    # KashFlow answers slowly now, so the busy state is there to be seen.
    rig.sandbox.faults.latency_ms = 300
    button = page.get_by_role("link", name="Download all as one PDF")
    async with page.expect_download() as pending:
        await button.click()
        await expect(page.locator("#download-status")).to_contain_text("Preparing your PDF")
        await expect(page.locator("a.button").first).to_have_text("Preparing your PDF…")
    download = await pending.value
    saved = tmp_path / "download.pdf"
    await download.save_as(saved)

    today = date.today().isoformat()
    # Chromium prefers the exact UTF-8 name (filename*) to the ASCII fallback.
    assert download.suggested_filename == f"Northwind Studio Ltd-IVY01-invoices-{today}.pdf"
    numbers = printed_numbers(saved.read_bytes())
    assert list(dict.fromkeys(numbers)) == listed
    assert len(numbers) >= len(listed)
    await expect(page.locator("#download-status")).to_have_text("Your PDF is downloading.")
    await expect(button).to_have_text("Download all as one PDF")
    assert page.url == f"{site}/l/{token}"  # the page stayed put
    assert origins.foreign == []
    assert errors == []  # no CSP violation, no script error
    await context.close()


async def test_one_invoice_downloads_from_its_row(
    rig: WebRig, site: str, browser: Browser, tmp_path: Path
) -> None:
    record = rig.sandbox.invoices("demo", "FOX01")[0]
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{site}/l/{rig.mint('FOX01')}")

    async with page.expect_download() as pending:
        await page.get_by_role("link", name=f"PDF of invoice {record.number}").click()
    download = await pending.value
    saved = tmp_path / "one.pdf"
    await download.save_as(saved)

    assert set(printed_numbers(saved.read_bytes())) == {record.number}
    await context.close()


async def test_on_a_phone_the_table_becomes_cards_without_sideways_scrolling(
    rig: WebRig, site: str, browser: Browser
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True
    )
    page = await context.new_page()
    await page.goto(f"{site}/l/{rig.mint('ACME01')}")

    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page is {widths[0]}px wide on a {widths[1]}px screen"
    first_row = page.locator("table.invoices tbody tr").first
    assert await first_row.evaluate("row => getComputedStyle(row).display") == "grid"
    await expect(first_row.locator('[data-label="To pay"]')).to_be_visible()
    await expect(page.get_by_role("link", name="Download all as one PDF")).to_be_in_viewport()
    await context.close()


async def test_keyboard_users_can_reach_the_downloads_and_see_focus(
    rig: WebRig, site: str, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(f"{site}/l/{rig.mint('DUNE01')}")

    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    download_all = page.get_by_role("link", name="Download all as one PDF")
    await expect(download_all).to_be_focused()
    outline = await download_all.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"


async def test_a_broken_link_shows_the_plain_page(site: str, browser: Browser) -> None:
    page = await browser.new_page()
    response = await page.goto(f"{site}/l/not-a-real-link")

    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("This link is not valid")
