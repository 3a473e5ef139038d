"""A client's page as they would meet it: in their language, what is to pay and how,
credit notes as credit, views, search and sorting as links, the logo and one invoice's
page. The app runs on a loopback port against the sandbox KashFlow."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image
from pypdf import PdfReader

import web
from permalink.business import clean_logo
from permalink.presentation import BADGE_COLOURS
from tests.support import WebRig, web_rig
from tests.support.pdfs import bookmarks

Client = TestClient[Any, Any]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 100), (29, 79, 145)).save(out, format="PNG")
    return out.getvalue()


TITLES = re.compile(r'class="c-invoice"><a href="[^"]+">((?:Invoice|Credit note) \d+)</a>')


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_client: Any) -> Client:
    made: Client = await aiohttp_client(rig.app)
    return made


async def page(client: Client, path: str, **headers: str) -> str:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return await response.text()


def titles(html: str) -> list[str]:
    return TITLES.findall(html)


async def test_the_page_speaks_the_browsers_language(rig: WebRig, client: Client) -> None:
    token = rig.mint("CORV01")
    html = await page(client, f"/l/{token}", **{"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert '<html lang="de">' in html
    assert "Zu zahlen" in html and "Ihre Rechnungen" in html
    owed = sum((r.outstanding for r in rig.sandbox.invoices("demo", "CORV01")), Decimal(0))
    german = f"{owed:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    assert f"<li>{german}\xa0€</li>" in html
    # Dates as a German reader writes them: the day the page speaks of, and each due date.
    assert f"{date.today():%d.%m.%Y}" in html
    for record in rig.sandbox.invoices("demo", "CORV01"):
        assert f"{record.due:%d.%m.%Y}" in html


async def test_the_accountants_choice_comes_before_the_browser_and_the_default_after(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("FOX01")
    business = rig.core.store.business
    await business.update("demo", default_language="nl")
    assert '<html lang="nl">' in await page(client, f"/l/{token}")
    assert '<html lang="fr">' in await page(client, f"/l/{token}", **{"Accept-Language": "fr"})
    await business.set_customer_language("demo", "FOX01", "cy")
    html = await page(client, f"/l/{token}", **{"Accept-Language": "fr"})
    assert '<html lang="cy">' in html and "Eich anfonebau" in html


async def test_credit_notes_are_credit_and_come_off_what_is_to_pay(
    rig: WebRig, client: Client
) -> None:
    html = await page(client, f"/l/{rig.mint('DUNE01', 'unpaid')}")
    credit = next(r for r in rig.sandbox.invoices("demo", "DUNE01") if r.is_credit_note)
    assert f"Credit note {credit.number}" in titles(html)
    assert '<span class="badge badge-credit">Credit</span>' in html
    assert "badge-paid" not in html
    assert "Invoices £3,480.00 − credit £162.00 = to pay £3,318.00" in html
    assert "<li>£3,318.00</li>" in html


async def test_the_page_says_how_to_pay(rig: WebRig, client: Client) -> None:
    await rig.core.store.business.update(
        "demo",
        bank_name="Barclays Bank UK PLC",
        account_name="Northwind Studio Ltd",
        sort_code="200000",
        account_number="55779911",
        reference="customer",
        pay_url="https://pay.northwind.example/",
    )
    html = await page(client, f"/l/{rig.mint('IVY01')}")
    # Who the page is from: the business and its address, as KashFlow holds them.
    assert '<p class="address">2nd Floor, 14 Canal Wharf, Manchester, M1 3LE</p>' in html
    for text in ("How to pay", "Barclays Bank UK PLC", "20-00-00", "55779911", "IVY01"):
        assert text in html
    assert 'href="https://pay.northwind.example/"' in html
    nothing_owed = await page(client, f"/l/{rig.mint('HOLL01')}")
    assert "How to pay" not in nothing_owed  # all paid: nothing to pay, no instructions


async def test_a_long_history_shows_what_is_owed_first_and_folds_the_rest_by_year(
    rig: WebRig, client: Client
) -> None:
    html = await page(client, f"/l/{rig.mint('ACME01')}")
    records = rig.sandbox.invoices("demo", "ACME01")
    open_count = sum(1 for r in records if not r.paid)
    assert f"Still to pay: {open_count} invoices" in html
    years = {r.issued.year for r in records if r.paid}
    assert html.count('<details class="year">') == len(years)
    shown = titles(html)
    assert shown[:open_count] == [
        f"Invoice {r.number}"
        for r in sorted(records, key=lambda r: (r.issued, r.number), reverse=True)
        if not r.paid
    ]
    assert len(shown) == len(records)  # folded, not dropped


async def test_views_search_and_sorting_are_links(rig: WebRig, client: Client) -> None:
    token = rig.mint("ACME01")
    html = await page(client, f"/l/{token}")
    for view in ("unpaid", "overdue"):
        assert f'<a href="/l/{token}?view={view}">' in html
    records = rig.sandbox.invoices("demo", "ACME01")
    overdue = await page(client, f"/l/{token}?view=overdue")
    assert sorted(titles(overdue)) == sorted(
        f"Invoice {r.number}" for r in records if not r.paid and r.due < date.today()
    )
    assert f'<a href="/l/{token}?view=overdue" aria-current="page">' in overdue
    found = await page(client, f"/l/{token}?q=125")
    assert titles(found) and all("125" in t for t in titles(found))
    assert "Showing" in found
    by_total = await page(client, f"/l/{token}?view=unpaid&sort=total&dir=asc")
    totals = {f"Invoice {r.number}": r.total for r in records}
    amounts = [totals[t] for t in titles(by_total)]
    assert amounts == sorted(amounts)
    assert 'aria-sort="ascending"' in by_total
    # Nonsense in the query string is simply the default view.
    assert titles(await page(client, f"/l/{token}?view=<x>&sort=evil&dir=up")) == titles(html)


async def test_one_invoice_has_its_own_page_with_lines(rig: WebRig, client: Client) -> None:
    token = rig.mint("FOX01")
    record = next(r for r in rig.sandbox.invoices("demo", "FOX01") if len(r.lines) > 40)
    html = await page(client, f"/l/{token}/invoice/{record.number}")
    assert f"<h1>Invoice {record.number}</h1>" in html
    assert html.count('<th scope="row" class="description">') == len(record.lines)
    assert f'href="/l/{token}"' in html  # back to the list
    other = rig.sandbox.invoices("demo", "DUNE01")[0].number
    response = await client.get(f"/l/{token}/invoice/{other}")
    assert response.status == 404 and "Invoice not found" in await response.text()


async def test_the_logo_is_served_from_our_origin(rig: WebRig, client: Client) -> None:
    token = rig.mint("IVY01")
    assert "<img" not in await page(client, f"/l/{token}")
    assert (await client.get(f"/l/{token}/logo")).status == 404
    logo = clean_logo(png())
    await rig.core.store.business.set_logo("demo", logo)
    html = await page(client, f"/l/{token}")
    match = re.search(r'<img class="logo" src="(/l/[^"]+/logo\?v=\d+)" alt="">', html)
    assert match is not None
    response = await client.get(match.group(1))
    assert response.status == 200 and response.content_type == "image/png"
    assert await response.read() == logo
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    broken = await client.get("/l/not-a-token/logo")
    assert broken.status == 404 and "This link is not valid" in await broken.text()


async def test_error_pages_speak_the_browsers_language(client: Client) -> None:
    response = await client.get("/l/not-a-token", headers={"Accept-Language": "es"})
    html = await response.text()
    assert response.status == 404
    assert '<html lang="es">' in html and "Este enlace no es válido" in html


@pytest.mark.parametrize("code", ["IVY01", "FOX01"])
async def test_with_pdf_batching_the_pack_still_bookmarks_each_invoice(
    tmp_path: Path, aiohttp_client: Any, code: str
) -> None:
    async with web_rig(tmp_path, gateway={"print_batch": 3}) as batched:
        client: Client = await aiohttp_client(batched.app)
        token = batched.mint(code)
        response = await client.get(f"/l/{token}/all.pdf")
        assert response.status == 200
        marks = bookmarks(await response.read())
        records = batched.sandbox.invoices("demo", code)
        assert len(marks) == 1 + len(records)
        assert sorted(title.split(" · ")[0] for title, _ in marks[1:]) == sorted(
            f"Invoice {r.number}" for r in records
        )
        starts = [page for _, page in marks]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)


async def test_a_business_that_turns_the_statement_off_gets_invoices_only(
    rig: WebRig, client: Client
) -> None:
    await rig.core.store.business.update("demo", statement_cover=False)
    token = rig.mint("IVY01")
    response = await client.get(f"/l/{token}/all.pdf")
    assert response.status == 200
    pack = PdfReader(io.BytesIO(await response.read()))
    singles = 0
    for record in rig.sandbox.invoices("demo", "IVY01"):
        one = await client.get(f"/l/{token}/invoice/{record.number}.pdf")
        assert one.status == 200
        singles += len(PdfReader(io.BytesIO(await one.read())).pages)
    assert len(pack.pages) == singles
    marks = bookmarks(pack)
    assert len(marks) == len(rig.sandbox.invoices("demo", "IVY01"))
    assert not any(title.startswith("Statement · ") for title, _ in marks)
    assert pack.metadata is not None and pack.metadata.title


def test_the_email_badges_wear_the_pages_colours() -> None:
    css = (Path(web.__file__).parent / "static" / "web.css").read_text()
    colours = dict(re.findall(r"(--[a-z]+-(?:ink|bg)):\s*(#[0-9a-f]{6})", css))
    for status, (ink, background) in BADGE_COLOURS.items():
        badge = rf"\.badge-{status} \{{ color: var\((--[a-z]+-ink)\); "
        rule = re.search(badge + r"background: var\((--[a-z]+-bg)\); \}", css)
        assert rule is not None, f"web.css has no badge for {status}"
        assert (colours[rule.group(1)], colours[rule.group(2)]) == (ink, background), status
