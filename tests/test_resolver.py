"""The resolver over real sockets: a permalink's page, its PDFs, and every way it can fail.

The app runs on a loopback port (pytest-aiohttp) and talks to the sandbox KashFlow over
HTTP, so each assertion is about what a client would see in their browser.
"""

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
from pypdf import PdfReader

from kashflow.models import Credentials
from kashflow.sandbox import DEMO, IPLOCKED, NOAPI, InvoiceRecord
from permalink.activity import LINK_OPENED, PDF_DOWNLOADED, ActivityLog
from permalink.keyring import Keyring
from permalink.links import seal
from tests.support import WebRig, web_rig
from tests.support.stores import both_stores
from web.resolver import content_disposition
from web.security import RedactingAccessLogger

Client = TestClient[Any, Any]

ROW = re.compile(
    r'<th scope="row" class="c-invoice"><a href="[^"]+">(?:Invoice|Credit note) (\d+)</a></th>.*?'
    r'class="num c-total">([^<]*)<.*?'
    r'class="num c-owed">([^<]*)<.*?'
    r'class="badge badge-([a-z-]+)"',
    re.S,
)
FOOTER = re.compile(r"(?:Invoice|Credit note) (\d+)")


@pytest.fixture
async def rig(tmp_path: Path, store_url: str | None) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path, database_url=store_url) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    # Served as production serves it: with the access log that redacts tokens.
    server = await aiohttp_server(rig.app, access_log_class=RedactingAccessLogger)
    client: Client = await aiohttp_client(server)
    return client


def rows(html: str) -> list[tuple[int, str, str, str]]:
    """(number, total, outstanding, status) for each invoice row, in page order."""
    return [(int(n), total, owed, status) for n, total, owed, status in ROW.findall(html)]


def expected_status(record: InvoiceRecord, today: date) -> str:
    if record.is_credit_note:
        return "credit"
    if record.paid or record.outstanding <= 0:
        return "paid"
    if record.due < today:
        return "overdue"
    return "part-paid" if record.amount_paid > 0 else "due"


def newest_first(records: tuple[InvoiceRecord, ...]) -> list[int]:
    ordered = sorted(records, key=lambda r: (r.issued, r.number), reverse=True)
    return [r.number for r in ordered]


def open_first(records: tuple[InvoiceRecord, ...]) -> list[int]:
    """The page's order: what is still to pay (newest first), then the paid ones."""
    still_open = tuple(r for r in records if not r.paid and r.outstanding != 0)
    return newest_first(still_open) + newest_first(tuple(r for r in records if r not in still_open))


def pdf_invoice_numbers(data: bytes) -> list[int]:
    """The invoice number printed on each page after the statement page, in page order."""
    reader = PdfReader(io.BytesIO(data))
    pages = reader.pages
    if "Statement" in pages[0].extract_text():
        pages = pages[1:]
    numbers = []
    for page in pages:
        found = FOOTER.findall(page.extract_text())
        assert found, "every sandbox page names its invoice"
        numbers.append(int(found[-1]))
    return numbers


def gbp(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}£{abs(amount):,.2f}"


# -- the page ------------------------------------------------------------------------------


@both_stores
async def test_all_scope_lists_every_invoice_with_amounts_and_status(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("BRIGHT01", "all")
    response = await client.get(f"/l/{token}")
    html = await response.text()

    assert response.status == 200
    assert "Northwind Studio Ltd" in html
    assert "Brightwater Cafe" in html
    records = rig.sandbox.invoices("demo", "BRIGHT01")
    today = date.today()
    shown = rows(html)
    assert [n for n, *_ in shown] == open_first(records)
    by_number = {r.number: r for r in records}
    for number, total, owed, status in shown:
        record = by_number[number]
        assert total == gbp(record.total)
        assert owed == gbp(record.outstanding)
        assert status == expected_status(record, today)
    owed_total = sum((r.outstanding for r in records), Decimal(0))
    assert f"<li>{gbp(owed_total)}</li>" in html
    assert '<html lang="en-GB">' in html
    assert "Download all as one PDF" in html
    assert f'href="/l/{token}/all.pdf"' in html
    assert f'href="/l/{token}/unpaid.pdf"' in html
    assert f'href="/l/{token}/invoice/{shown[0][0]}.pdf"' in html


async def test_unpaid_scope_lists_only_what_is_owed(rig: WebRig, client: Client) -> None:
    token = rig.mint("IVY01", "unpaid")
    html = await (await client.get(f"/l/{token}")).text()

    unpaid = tuple(r for r in rig.sandbox.invoices("demo", "IVY01") if not r.paid)
    assert unpaid, "the seed gives this customer unpaid invoices"
    assert [n for n, *_ in rows(html)] == newest_first(unpaid)
    assert "Your unpaid invoices" in html
    assert "Unpaid only" not in html  # the whole page already is


async def test_invoice_scope_shows_that_invoice_with_its_lines_and_totals(
    rig: WebRig, client: Client
) -> None:
    record = rig.sandbox.invoices("demo", "DUNE01")[0]
    token = rig.mint("DUNE01", f"invoice:{record.number}")
    html = await (await client.get(f"/l/{token}")).text()

    assert f"<h1>Invoice {record.number}</h1>" in html
    for line in record.lines:
        assert line.description in html
    assert f"<dt>VAT</dt><dd>{gbp(record.vat)}</dd>" in html
    assert f"<dt>Total</dt><dd>{gbp(record.total)}</dd>" in html
    assert f'href="/l/{token}/invoice/{record.number}.pdf"' in html
    assert "Download as PDF" in html
    assert "All your invoices" not in html  # a link to one invoice has no list


async def test_euro_invoices_are_shown_in_euros(rig: WebRig, client: Client) -> None:
    html = await (await client.get(f"/l/{rig.mint('CORV01')}")).text()

    records = rig.sandbox.invoices("demo", "CORV01")
    first = rows(html)[0]
    assert first[1] == f"€{next(r for r in records if r.number == first[0]).total:,.2f}"
    assert "£" not in html.split("<tbody>")[1].split("</main>")[0]


async def test_invoices_raised_after_the_link_appear_and_paid_ones_leave_unpaid(
    rig: WebRig, client: Client
) -> None:
    everything = rig.mint("FOX01", "all")
    unpaid = rig.mint("FOX01", "unpaid")
    before = [n for n, *_ in rows(await (await client.get(f"/l/{everything}")).text())]

    new_number = rig.sandbox.add_invoice("demo", "FOX01", issued=date.today())
    after_all = [n for n, *_ in rows(await (await client.get(f"/l/{everything}")).text())]
    after_unpaid = [n for n, *_ in rows(await (await client.get(f"/l/{unpaid}")).text())]
    assert new_number not in before
    assert after_all[0] == new_number
    assert new_number in after_unpaid

    rig.sandbox.mark_paid("demo", new_number)
    paid_off = [n for n, *_ in rows(await (await client.get(f"/l/{unpaid}")).text())]
    assert new_number not in paid_off


async def test_a_customer_without_invoices_gets_a_friendly_empty_page(
    rig: WebRig, client: Client
) -> None:
    response = await client.get(f"/l/{rig.mint('ELM01')}")
    html = await response.text()

    assert response.status == 200
    assert "No invoices yet" in html
    assert "Download all" not in html


@both_stores
async def test_opening_a_link_is_recorded_without_the_token(rig: WebRig, client: Client) -> None:
    link = rig.link("GRAN01", "all")
    await rig.registry.add(
        "demo",
        customer_code="GRAN01",
        customer_name="Granite Row Builders",
        scope="all",
        created=link.issued,
        minted_by="cli",
        link_id=link.link_id,
    )
    token = seal(link, rig.keyring)

    assert (await client.get(f"/l/{token}")).status == 200
    assert (await client.get(f"/l/{token}/all.pdf")).status == 200

    record = await rig.registry.get("demo", link.link_id)
    assert record is not None and record.opens == 1
    events = await ActivityLog(rig.db).page("demo")
    assert [e.kind for e in events] == [PDF_DOWNLOADED, LINK_OPENED]
    assert all("GRAN01" in e.subject for e in events)
    for event in events:
        assert token not in f"{event.subject} {event.detail}"


# -- PDFs ----------------------------------------------------------------------------------


async def test_one_invoice_pdf_downloads_with_a_sensible_name(rig: WebRig, client: Client) -> None:
    record = rig.sandbox.invoices("demo", "DUNE01")[-1]
    token = rig.mint("DUNE01", "all")
    response = await client.get(f"/l/{token}/invoice/{record.number}.pdf")
    body = await response.read()

    assert response.status == 200
    assert response.content_type == "application/pdf"
    today = date.today().isoformat()
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="Northwind-Studio-Ltd-DUNE01-invoice-{record.number}-{today}.pdf"; '
        f"filename*=UTF-8''Northwind%20Studio%20Ltd-DUNE01-invoice-{record.number}-{today}.pdf"
    )
    assert set(pdf_invoice_numbers(body)) == {record.number}


@both_stores
async def test_merged_pdf_holds_every_invoice_in_page_order(rig: WebRig, client: Client) -> None:
    token = rig.mint("IVY01", "all")
    page = await (await client.get(f"/l/{token}")).text()
    response = await client.get(f"/l/{token}/all.pdf")
    body = await response.read()

    assert response.status == 200
    assert response.content_type == "application/pdf"
    assert "IVY01-invoices-" in response.headers["Content-Disposition"]
    assert int(response.headers["Content-Length"]) == len(body)
    # The pack follows the page: what is still to pay first, each part newest first.
    listed = [n for n, *_ in rows(page)]
    assert listed == open_first(rig.sandbox.invoices("demo", "IVY01"))
    printed = pdf_invoice_numbers(body)
    # Each invoice's pages, in order (multi-page ones repeat), after the statement page.
    assert list(dict.fromkeys(printed)) == listed
    pages = 0
    for number in listed:
        single = await (await client.get(f"/l/{token}/invoice/{number}.pdf")).read()
        pages += len(PdfReader(io.BytesIO(single)).pages)
    assert len(printed) == pages
    assert len(PdfReader(io.BytesIO(body)).pages) == 1 + pages


async def test_unpaid_pdf_of_an_all_link_holds_only_unpaid_invoices(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("IVY01", "all")
    response = await client.get(f"/l/{token}/unpaid.pdf")
    body = await response.read()

    unpaid = {r.number for r in rig.sandbox.invoices("demo", "IVY01") if not r.paid}
    assert response.status == 200
    assert "IVY01-unpaid-invoices-" in response.headers["Content-Disposition"]
    assert set(pdf_invoice_numbers(body)) == unpaid


async def test_unpaid_link_all_pdf_is_its_unpaid_invoices(rig: WebRig, client: Client) -> None:
    token = rig.mint("DUNE01", "unpaid")
    body = await (await client.get(f"/l/{token}/all.pdf")).read()

    unpaid = {r.number for r in rig.sandbox.invoices("demo", "DUNE01") if not r.paid}
    assert set(pdf_invoice_numbers(body)) == unpaid


async def test_invoices_outside_the_scope_get_the_same_404_as_missing_ones(
    rig: WebRig, client: Client
) -> None:
    own = rig.sandbox.invoices("demo", "DUNE01")
    paid = next(r.number for r in own if r.paid)
    other = rig.sandbox.invoices("demo", "FOX01")[0].number
    everything = rig.mint("DUNE01", "all")
    unpaid = rig.mint("DUNE01", "unpaid")
    single = rig.mint("DUNE01", f"invoice:{own[-1].number}")

    missing = await client.get(f"/l/{everything}/invoice/99999999.pdf")
    reference = await missing.text()
    assert missing.status == 404
    assert "Invoice not found" in reference
    for path in (
        f"/l/{everything}/invoice/{other}.pdf",  # another customer's invoice
        f"/l/{everything}/invoice/99999999999.pdf",  # beyond any KashFlow number
        f"/l/{unpaid}/invoice/{paid}.pdf",  # paid, so not in an unpaid link
        f"/l/{single}/invoice/{own[0].number}.pdf",  # not the link's one invoice
        f"/l/{unpaid}/unpaid.pdf",  # only an "all" link offers this
        f"/l/{single}/unpaid.pdf",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert await response.text() == reference, path


async def test_a_link_for_several_invoices_shows_exactly_those(rig: WebRig, client: Client) -> None:
    own = [r for r in rig.sandbox.invoices("demo", "IVY01") if not r.is_credit_note]
    chosen, outside = own[:2], own[2]
    a, b = (r.number for r in chosen)
    token = rig.mint("IVY01", f"invoice:{a},{b}")

    page = await client.get(f"/l/{token}")
    listed = [n for n, *_ in rows(await page.text())]
    assert page.status == 200
    assert listed == open_first(tuple(chosen))  # those two, and no other

    missing = await (await client.get(f"/l/{token}/invoice/99999999.pdf")).text()
    refused = await client.get(f"/l/{token}/invoice/{outside.number}.pdf")
    assert refused.status == 404
    assert await refused.text() == missing  # as if it did not exist
    assert "Invoice not found" in missing

    merged = await client.get(f"/l/{token}/all.pdf")
    body = await merged.read()
    assert merged.status == 200
    assert list(dict.fromkeys(pdf_invoice_numbers(body))) == listed
    pages = 0
    for number in (a, b):
        single = await client.get(f"/l/{token}/invoice/{number}.pdf")
        assert single.status == 200
        pages += len(PdfReader(io.BytesIO(await single.read())).pages)
    assert len(PdfReader(io.BytesIO(body)).pages) == 1 + pages  # the statement page first

    document = await (await client.get(f"/l/{token}.json")).json()
    assert [entry["number"] for entry in document["invoices"]] == listed


# -- links that do not work ----------------------------------------------------------------


@both_stores
async def test_every_broken_link_gets_the_identical_not_valid_page(
    rig: WebRig, client: Client
) -> None:
    good = rig.mint("FOX01")
    revoked_link = rig.link("FOX01")
    await rig.registry.add(
        "demo",
        customer_code="FOX01",
        customer_name="Foxglove Interiors",
        scope="all",
        created=revoked_link.issued,
        minted_by="settings",
        link_id=revoked_link.link_id,
    )
    await rig.registry.revoke("demo", revoked_link.link_id)
    cut_off = rig.mint("FOX01", issued_ago=3600)
    await rig.registry.revoke_all("demo", int(rig.clock()) - 60)
    flipped = good[:40] + ("A" if good[40] != "A" else "B") + good[41:]
    tokens = {
        "tampered": flipped,
        "truncated": good[:-6],
        "garbage": "not-a-token",
        "wrong key": seal(rig.link("FOX01"), Keyring.generate()),
        "expired": rig.mint("FOX01", issued_ago=7200, expires_in=3600),
        "revoked": seal(revoked_link, rig.keyring),
        "revoked by cut-off": cut_off,
    }

    bodies = {}
    for cause, token in tokens.items():
        # A fresh minute per cause keeps this loopback client under the invalid-link limit.
        rig.clock.advance(61)
        for suffix in ("", "/all.pdf", "/invoice/1.pdf"):
            response = await client.get(f"/l/{token}{suffix}")
            assert response.status == 404, (cause, suffix)
            bodies[(cause, suffix)] = await response.read()

    assert len(set(bodies.values())) == 1
    body = next(iter(bodies.values())).decode()
    assert "This link is not valid" in body
    assert "Traceback" not in body
    assert (await client.get(f"/l/{good}")).status == 200


async def test_a_link_whose_customer_is_gone_is_not_valid(rig: WebRig, client: Client) -> None:
    reference = await (await client.get("/l/not-a-token")).read()
    token = rig.mint("FOX01", customer_id=999_999)

    for path in (f"/l/{token}", f"/l/{token}/all.pdf"):
        response = await client.get(path)
        assert response.status == 404
        assert await response.read() == reference


# -- KashFlow failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "status", "sentence"),
    [
        (
            Credentials(DEMO.username, "not-the-password"),
            503,
            "sign-in has changed since this link was made — ask them for a new link",
        ),
        (NOAPI, 503, "please ask the business that sent you this link"),
        (IPLOCKED, 503, "please ask the business that sent you this link"),
    ],
    ids=["wrong password", "api disabled", "ip not authorised"],
)
async def test_kashflow_refusals_get_human_pages(
    rig: WebRig, client: Client, credentials: Credentials, status: int, sentence: str
) -> None:
    token = rig.mint("FOX01", credentials=credentials, customer_id=412036)
    for path in (f"/l/{token}", f"/l/{token}/all.pdf"):
        response = await client.get(path)
        html = await response.text()
        assert response.status == status
        assert sentence in html
        assert "Traceback" not in html
        assert "Incorrect username" not in html  # KashFlow's own words stay in the log


async def test_kashflow_not_answering_asks_to_try_again(rig: WebRig, client: Client) -> None:
    token = rig.mint("FOX01")
    rig.sandbox.faults.http_500 = True
    response = await client.get(f"/l/{token}")

    assert response.status == 503
    assert response.headers["Retry-After"] == "60"
    assert "try again in a minute" in await response.text()

    rig.sandbox.faults.clear()
    assert (await client.get(f"/l/{token}")).status == 200


async def test_a_document_that_is_not_a_pdf_gets_a_502_page(rig: WebRig, client: Client) -> None:
    token = rig.mint("FOX01")
    number = rig.sandbox.invoices("demo", "FOX01")[0].number
    rig.sandbox.faults.bad_pdf = "html"

    single = await client.get(f"/l/{token}/invoice/{number}.pdf")
    merged = await client.get(f"/l/{token}/all.pdf")

    for response in (single, merged):
        assert response.status == 502
        assert response.content_type == "text/html"
        assert "could not read" in await response.text()


# -- pieces --------------------------------------------------------------------------------


def test_content_disposition_keeps_unicode_names_and_a_safe_ascii_fallback() -> None:
    header = content_disposition("Café Ørsted/Sons-ACME01-invoices-2025-03-05.pdf")

    assert header == (
        'attachment; filename="Cafe-rsted-Sons-ACME01-invoices-2025-03-05.pdf"; '
        "filename*=UTF-8''Caf%C3%A9%20%C3%98rsted-Sons-ACME01-invoices-2025-03-05.pdf"
    )


def test_content_disposition_cannot_be_used_to_inject_headers() -> None:
    header = content_disposition('Evil"\r\nSet-Cookie: x=1.pdf')

    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="Evil-Set-Cookie-x-1.pdf"; ')
