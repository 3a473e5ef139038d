"""The KashFlow gateway against the sandbox over a real socket: every operation, every error."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import date
from decimal import Decimal

import pytest
from pypdf import PdfReader

from kashflow.client import Account, KashFlow
from kashflow.errors import (
    ApiDisabled,
    BadCredentials,
    BadDocument,
    IpNotAuthorised,
    NotFound,
    Rejected,
    Unavailable,
)
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, IPLOCKED, NOAPI, SECOND, Sandbox


def biggest_customer(sandbox: Sandbox) -> str:
    return max(
        (c.code for c in sandbox.customers("demo")),
        key=lambda code: len(sandbox.invoices("demo", code)),
    )


async def test_company_details(sandbox: Sandbox, demo_account: Account) -> None:
    company = await demo_account.company_details()
    assert company.name == sandbox.company("demo").name
    assert company.currency_symbol == "£"


async def test_customer_by_code_id_and_email(sandbox: Sandbox, demo_account: Account) -> None:
    expected = sandbox.customer("demo", "ACME01")
    by_code = await demo_account.customer_by_code("ACME01")
    by_id = await demo_account.customer_by_id(expected.id)
    by_email = await demo_account.customer_by_email(expected.email)
    assert by_code == by_id == by_email
    assert (by_code.id, by_code.name, by_code.email) == (expected.id, expected.name, expected.email)


async def test_customers_lists_every_seeded_customer(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customers = await demo_account.customers()
    assert sorted(c.code for c in customers) == sorted(c.code for c in sandbox.customers("demo"))


async def test_a_customer_with_several_addresses_exposes_each(
    sandbox: Sandbox, demo_account: Account
) -> None:
    shared = next(c for c in sandbox.customers("demo") if ";" in c.email)
    customer = await demo_account.customer_by_code(shared.code)
    assert len(customer.emails) == 2
    assert all("@" in e and ";" not in e for e in customer.emails)


async def test_invoices_for_the_big_customer_match_the_books(
    sandbox: Sandbox, demo_account: Account
) -> None:
    code = biggest_customer(sandbox)
    books = sandbox.invoices("demo", code)
    assert len(books) >= 200
    customer = await demo_account.customer_by_code(code)
    invoices = await demo_account.invoices_for_customer(customer.id)
    assert sorted(i.number for i in invoices) == sorted(r.number for r in books)
    by_number = {r.number: r for r in books}
    for invoice in invoices:
        record = by_number[invoice.number]
        assert invoice.total == record.total
        assert invoice.paid_amount == record.amount_paid
        assert invoice.due == record.due
        assert len(invoice.lines) == len(record.lines)


async def test_invoice_kinds_are_all_represented(demo_account: Account) -> None:
    today = date.today()
    invoices = [
        inv
        for c in await demo_account.customers()
        for inv in await demo_account.invoices_for_customer(c.id)
    ]
    statuses = {inv.status(today) for inv in invoices}
    assert {"paid", "due", "overdue"} <= statuses
    assert any(inv.is_credit_note for inv in invoices)
    assert any(inv.currency != "GBP" and inv.exchange_rate != 1 for inv in invoices)
    assert any(line.vat_exempt for inv in invoices for line in inv.lines)
    part_paid = next(inv for inv in invoices if not inv.paid and inv.paid_amount > 0)
    assert part_paid.outstanding == part_paid.total - part_paid.paid_amount > 0


async def test_customer_without_invoices_gets_an_empty_list(
    sandbox: Sandbox, demo_account: Account
) -> None:
    empty = next(c for c in sandbox.customers("demo") if not sandbox.invoices("demo", c.code))
    assert await demo_account.invoices_for_customer(empty.id) == []


async def test_unpaid_is_account_wide_and_only_unpaid(
    sandbox: Sandbox, demo_account: Account
) -> None:
    unpaid = await demo_account.unpaid_invoices()
    expected = {r.number for r in sandbox.invoices("demo") if not r.paid}
    assert {i.number for i in unpaid} == expected
    assert not any(i.paid for i in unpaid)


async def test_one_invoice_and_its_pdf(sandbox: Sandbox, demo_account: Account) -> None:
    record = sandbox.invoices("demo", "ACME01")[0]
    invoice = await demo_account.invoice(record.number)
    assert invoice.number == record.number and invoice.total == record.total
    pdf = await demo_account.invoice_pdf(record.number)
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert str(record.number) in text


async def test_newer_fields_than_the_wsdl_are_ignored(
    sandbox: Sandbox, demo_account: Account
) -> None:
    number = sandbox.add_invoice("demo", "ACME01", live_fields=True)
    invoice = await demo_account.invoice(number)
    assert invoice.number == number
    assert invoice.total == sandbox.invoice("demo", number).total


@pytest.mark.parametrize("variant", ["no", "zeroed"])
async def test_unknown_invoice_is_not_found_in_both_styles(
    sandbox: Sandbox, demo_account: Account, variant: str
) -> None:
    sandbox.faults.not_found_variant = variant  # type: ignore[assignment]
    with pytest.raises(NotFound):
        await demo_account.invoice(999_999)


@pytest.mark.parametrize("variant", ["no", "zeroed"])
async def test_unknown_customer_is_not_found(
    sandbox: Sandbox, demo_account: Account, variant: str
) -> None:
    sandbox.faults.not_found_variant = variant  # type: ignore[assignment]
    with pytest.raises(NotFound):
        await demo_account.customer_by_code("NOPE99")
    with pytest.raises(NotFound):
        await demo_account.customer_by_id(1)
    with pytest.raises(NotFound):
        await demo_account.customer_by_email("nobody@nowhere.example")


@pytest.mark.parametrize(
    ("credentials", "error"),
    [
        (Credentials("demo", "wrong-password"), BadCredentials),
        (Credentials("nobody", "x"), BadCredentials),
        (NOAPI, ApiDisabled),
        (IPLOCKED, IpNotAuthorised),
    ],
)
async def test_account_errors_are_told_apart(
    kashflow: KashFlow, credentials: Credentials, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        await kashflow.account(credentials).company_details()
    assert credentials.password not in str(caught.value)
    assert credentials.password not in repr(caught.value)


async def test_accounts_see_only_their_own_customers(kashflow: KashFlow) -> None:
    demo = {c.code for c in await kashflow.account(DEMO).customers()}
    second = {c.code for c in await kashflow.account(SECOND).customers()}
    assert demo and second and not demo & second


async def test_other_status_no_is_rejected(sandbox: Sandbox, demo_account: Account) -> None:
    sandbox.faults.status_detail["GetCompanyDetails"] = "Something unexpected happened"
    with pytest.raises(Rejected) as caught:
        await demo_account.company_details()
    assert caught.value.detail == "Something unexpected happened"


@pytest.mark.parametrize("fault", ["http_500", "malformed_xml", "reset"])
async def test_transport_faults_are_unavailable_after_a_retry(
    sandbox: Sandbox, demo_account: Account, fault: str
) -> None:
    setattr(sandbox.faults, fault, True)
    with pytest.raises(Unavailable):
        await demo_account.company_details()
    attempts = [c for c in sandbox.calls if c.operation == "GetCompanyDetails"]
    assert len(attempts) == 2  # the first try and one retry


async def test_a_transient_fault_is_retried_and_succeeds(
    sandbox: Sandbox, demo_account: Account
) -> None:
    sandbox.faults.http_500 = True
    sandbox.faults.operations = frozenset({"GetCompanyDetails"})

    async def heal() -> None:
        await sandbox.wait_for_call("GetCompanyDetails")
        sandbox.faults.http_500 = False

    healer = asyncio.create_task(heal())
    company = await demo_account.company_details()
    await healer
    assert company.name == sandbox.company("demo").name


async def test_a_hanging_kashflow_times_out(sandbox: Sandbox) -> None:
    sandbox.faults.hang = float("inf")
    async with KashFlow(sandbox.url, timeout=0.3, retries=0) as kf:
        with pytest.raises(Unavailable):
            await kf.account(DEMO).company_details()


async def test_nothing_listening_is_unavailable(unused_tcp_port: int) -> None:
    async with KashFlow(f"http://127.0.0.1:{unused_tcp_port}/api/service.asmx", retries=0) as kf:
        with pytest.raises(Unavailable):
            await kf.account(DEMO).company_details()


@pytest.mark.parametrize("bad", ["html", "404"])
async def test_a_print_url_that_is_not_a_pdf_is_a_bad_document(
    sandbox: Sandbox, demo_account: Account, bad: str
) -> None:
    sandbox.faults.bad_pdf = bad  # type: ignore[assignment]
    number = sandbox.invoices("demo", "ACME01")[0].number
    with pytest.raises(BadDocument):
        await demo_account.invoice_pdf(number)


async def test_credentials_never_reach_the_log(
    sandbox: Sandbox, kashflow: KashFlow, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = Credentials("demo", "s3cret-" + "x" * 12)
    with pytest.raises(BadCredentials):
        await kashflow.account(secret).company_details()
    sandbox.faults.http_500 = True
    with pytest.raises(Unavailable):
        await kashflow.account(DEMO).company_details()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret.password not in logged and DEMO.password not in logged


async def test_money_is_decimal_and_totals_add_up(demo_account: Account) -> None:
    customer = await demo_account.customer_by_code("ACME01")
    for invoice in await demo_account.invoices_for_customer(customer.id):
        assert isinstance(invoice.net, Decimal)
        assert invoice.total == invoice.net + invoice.vat


async def test_invoices_can_be_read_without_their_lines(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = await demo_account.customer_by_code("ACME01")
    full = await demo_account.invoices_for_customer(customer.id)
    bare = await demo_account.invoices_for_customer(customer.id, lines=False)
    assert all(inv.lines for inv in full) and not any(inv.lines for inv in bare)
    assert [(i.number, i.total, i.outstanding) for i in bare] == [
        (i.number, i.total, i.outstanding) for i in full
    ]
