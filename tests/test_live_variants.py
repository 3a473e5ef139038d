"""The gateway against each way the live KashFlow may answer where no public source says.

The sandbox has a switch per unknown (how an empty list is written, how the PDF is served
and for how long, whether lines name their type, what an unknown CustID gets, how e-mail
is matched, in which order a caller is checked, whether InvoiceNumberList merges); each
test flips one and shows the gateway still gives the rest of the product the same answer.
"""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from kashflow.client import Account, KashFlow
from kashflow.errors import (
    ApiDisabled,
    BadCredentials,
    BadDocument,
    IpNotAuthorised,
    KashFlowError,
    NotFound,
)
from kashflow.mapping import invoice as invoice_from_row
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, IPLOCKED, NOAPI, Sandbox
from kashflow.sandbox.faults import PDF_FETCH, Check
from kashflow.sandbox.seed import IPLOCKED_AUTO_AUTH_KEY


def empty_customer(sandbox: Sandbox) -> int:
    return next(c for c in sandbox.customers("demo") if not sandbox.invoices("demo", c.code)).id


@pytest.mark.parametrize("empty", ["element", "absent"])
async def test_an_empty_list_is_empty_however_it_is_written(
    sandbox: Sandbox, demo_account: Account, empty: str
) -> None:
    sandbox.faults.empty_result = empty  # type: ignore[assignment]
    assert await demo_account.invoices_for_customer(empty_customer(sandbox)) == []
    for code in ("ACME01", "IVY01"):
        customer = await demo_account.customer_by_code(code)
        assert len(await demo_account.invoices_for_customer(customer.id)) == len(
            sandbox.invoices("demo", code)
        )


@pytest.mark.parametrize("answer", ["empty", "no"])
async def test_an_unknown_custid_is_no_invoices_or_not_found_never_an_error_page(
    sandbox: Sandbox, demo_account: Account, answer: str
) -> None:
    sandbox.faults.unknown_customer_id = answer  # type: ignore[assignment]
    if answer == "empty":
        assert await demo_account.invoices_for_customer(999_999) == []
    else:
        with pytest.raises(NotFound):
            await demo_account.invoices_for_customer(999_999)
    # A real customer with no invoices is still simply empty.
    assert await demo_account.invoices_for_customer(empty_customer(sandbox)) == []


async def test_lines_without_xsi_type_are_read_like_typed_ones(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = await demo_account.customer_by_code("ACME01")
    typed = await demo_account.invoices_for_customer(customer.id)
    sandbox.faults.untyped_lines = True
    untyped = await demo_account.invoices_for_customer(customer.id)
    books = sandbox.invoices("demo", "ACME01")
    assert sum(len(i.lines) for i in untyped) == sum(len(r.lines) for r in books)
    assert untyped == typed
    one = await demo_account.invoice(typed[0].number)
    assert one.lines == typed[0].lines


async def test_the_customer_element_holds_the_code_and_amounts_four_decimals(
    sandbox: Sandbox, demo_account: Account
) -> None:
    record = sandbox.invoices("demo", "GRAN01")[0]
    invoice = await demo_account.invoice(record.number)
    assert (invoice.customer_code, invoice.customer_name) == ("GRAN01", "Granite Row Builders")
    assert invoice.total == record.total and invoice.paid_amount == record.amount_paid
    assert [line.vat_amount for line in invoice.lines] == [
        line.vat_amount for line in sorted(record.lines, key=lambda ln: ln.sort)
    ]


def test_an_older_reply_with_the_name_in_customer_is_still_read() -> None:
    row = {
        "InvoiceNumber": 7,
        "InvoiceDBID": 70,
        "CustomerID": 3,
        "Customer": "Granite Row Builders",
        "InvoiceDate": datetime(2026, 1, 5),
        "DueDate": datetime(2026, 2, 4),
        "NetAmount": Decimal("8.3300"),
        "VATAmount": Decimal("1.6700"),
        "AmountPaid": Decimal("0.0000"),
    }
    invoice = invoice_from_row(row)
    assert (invoice.customer_name, invoice.customer_code) == ("Granite Row Builders", "")
    assert invoice.total == Decimal("10.00")


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/pdf; qs=0.9"])
async def test_a_pdf_is_known_by_its_bytes_not_its_content_type(
    sandbox: Sandbox, demo_account: Account, content_type: str
) -> None:
    sandbox.faults.pdf_content_type = content_type
    record = sandbox.invoices("demo", "ACME01")[0]
    pdf = await demo_account.invoice_pdf(record.number)
    assert f"Invoice {record.number}" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


async def test_html_served_as_a_pdf_is_still_not_a_pdf(
    sandbox: Sandbox, demo_account: Account
) -> None:
    sandbox.faults.bad_pdf = "html"
    sandbox.faults.pdf_content_type = "application/pdf"
    with pytest.raises(BadDocument) as caught:
        await demo_account.invoice_pdf(sandbox.invoices("demo")[0].number)
    assert "not a PDF" in caught.value.detail


async def test_a_pdf_that_opens_only_within_a_session_is_not_a_pdf_to_the_gateway(
    sandbox: Sandbox, demo_account: Account
) -> None:
    # The gateway keeps no cookies by design: a print URL that needs the session cookie its
    # first answer sets is refused as a bad document, never fetched with a session.
    sandbox.faults.pdf_needs_cookie = True
    with pytest.raises(BadDocument) as caught:
        await demo_account.invoice_pdf(sandbox.invoices("demo")[0].number)
    assert caught.value.detail == "HTTP 200, text/html, not a PDF"
    fetches = [call for call in sandbox.calls if call.operation == PDF_FETCH]
    assert fetches and not any(call.cookie for call in fetches)


async def test_a_short_lived_print_url_is_fetched_at_once(
    sandbox: Sandbox, demo_account: Account
) -> None:
    sandbox.faults.pdf_expires_after = 3.0
    numbers = [r.number for r in sandbox.invoices("demo", "IVY01")]
    for number in numbers:
        assert (await demo_account.invoice_pdf(number)).startswith(b"%PDF-")


async def test_an_expired_print_url_is_a_bad_document_not_garbage(
    sandbox: Sandbox, demo_account: Account
) -> None:
    sandbox.faults.pdf_expires_after = 0
    with pytest.raises(BadDocument) as caught:
        await demo_account.invoice_pdf(sandbox.invoices("demo")[0].number)
    assert "HTTP 404" in caught.value.detail


@pytest.mark.parametrize("match", ["loose", "exact"])
async def test_a_client_is_found_by_any_address_on_file_whatever_kashflows_matching(
    sandbox: Sandbox, demo_account: Account, match: str
) -> None:
    sandbox.faults.email_match = match  # type: ignore[assignment]
    shared = next(c for c in sandbox.customers("demo") if ";" in c.email)
    for address in (*shared.emails, shared.emails[0].upper(), f"  {shared.emails[1]} "):
        assert (await demo_account.customer_by_email(address)).code == shared.code
    with pytest.raises(NotFound):
        await demo_account.customer_by_email("nobody@nowhere.example")


async def test_an_exact_match_costs_no_book_read(sandbox: Sandbox, demo_account: Account) -> None:
    sandbox.faults.email_match = "exact"
    acme = sandbox.customer("demo", "ACME01")
    await demo_account.customer_by_email(acme.email)
    assert [c.operation for c in sandbox.calls] == ["GetCustomerByEmail"]


ORDERS: list[tuple[Check, ...]] = [
    ("credentials", "api", "ip"),
    ("ip", "credentials", "api"),
    ("api", "ip", "credentials"),
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_each_refusal_is_told_apart_whatever_order_kashflow_checks_in(
    sandbox: Sandbox, kashflow: KashFlow, order: tuple[Check, ...]
) -> None:
    sandbox.faults.check_order = order
    expected: dict[str, type[KashFlowError]] = {
        "credentials": BadCredentials,
        "api": ApiDisabled,
        "ip": IpNotAuthorised,
    }
    wrong_locked = Credentials(IPLOCKED.username, "wrong")
    wrong_noapi = Credentials(NOAPI.username, "wrong")
    first_of = {
        "locked": next(c for c in order if c in ("credentials", "ip")),
        "noapi": next(c for c in order if c in ("credentials", "api")),
    }
    with pytest.raises(expected[first_of["locked"]]):
        await kashflow.account(wrong_locked).company_details()
    with pytest.raises(expected[first_of["noapi"]]):
        await kashflow.account(wrong_noapi).company_details()
    with pytest.raises(IpNotAuthorised) as caught:
        await kashflow.account(IPLOCKED).company_details()
    assert caught.value.ip == "127.0.0.1"
    with pytest.raises(BadCredentials):
        await kashflow.account(Credentials("nobody", "x")).company_details()
    assert (await kashflow.account(DEMO).company_details()).name


async def test_auto_auth_lets_the_server_in_with_the_owners_key(
    sandbox: Sandbox, kashflow: KashFlow
) -> None:
    locked = kashflow.account(IPLOCKED)
    with pytest.raises(IpNotAuthorised):
        await locked.company_details()
    with pytest.raises(KashFlowError):
        await locked.auto_auth_ip("0000-WRONG")
    assert sandbox.allowed_ips("iplocked") == frozenset()
    await locked.auto_auth_ip(IPLOCKED_AUTO_AUTH_KEY.lower())
    assert sandbox.allowed_ips("iplocked") == {"127.0.0.1"}
    assert (await locked.company_details()).name == sandbox.company("iplocked").name
