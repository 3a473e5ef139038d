"""The sandbox KashFlow over a real socket: KashFlow's wire format, errors, faults and PDFs.

Requests are built by zeep from the project's WSDL and sent with aiohttp; replies are read
with zeep (as the gateway does) or inspected as XML where the exact shape is the point.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import pypdf
import pytest
import zeep
from lxml import etree
from zeep.exceptions import Fault, XMLParseError

from kashflow.sandbox import DEMO, IPLOCKED, NOAPI, PDF_FETCH, SECOND, STATUS_TEXTS, Sandbox
from kashflow.sandbox.ledger import NewLine
from kashflow.sandbox.seed import IPLOCKED_AUTO_AUTH_KEY

WSDL = Path(__file__).resolve().parent.parent / "kashflow" / "wsdl" / "kashflow.wsdl"
NS = {"kf": "KashFlow", "soap": "http://schemas.xmlsoap.org/soap/envelope/"}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def zeep_client(*, strict: bool) -> zeep.Client:
    settings = zeep.Settings(
        strict=strict,
        forbid_dtd=True,
        forbid_entities=True,
        # KashFlow sends fields the trimmed WSDL does not declare, between declared ones.
        xsd_ignore_sequence_order=not strict,
    )
    return zeep.Client(str(WSDL), settings=settings)


@pytest.fixture(scope="module")
def lenient() -> zeep.Client:
    return zeep_client(strict=False)


@pytest.fixture(scope="module")
def strict() -> zeep.Client:
    return zeep_client(strict=True)


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes

    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    def text(self, path: str) -> str | None:
        found = self.xml().find(path, NS)
        return None if found is None else (found.text or "")


class _ZeepReply:
    """What zeep's binding reads from a transport reply."""

    def __init__(self, reply: Reply) -> None:
        self.status_code = reply.status
        self.content = reply.body
        self.headers = {"Content-Type": reply.content_type}
        self.encoding = "utf-8"


@dataclass
class Soap:
    """Posts zeep-built envelopes to a sandbox and reads replies the gateway's way."""

    sandbox: Sandbox
    http: aiohttp.ClientSession
    client: zeep.Client

    def envelope(self, operation: str, login: Any = DEMO, **params: Any) -> bytes:
        node = self.client.create_message(
            self.client.service,
            operation,
            UserName=login.username,
            Password=login.password,
            **params,
        )
        return bytes(etree.tostring(node, xml_declaration=True, encoding="utf-8"))

    async def post(self, operation: str, body: bytes, **kwargs: Any) -> Reply:
        headers = {"SOAPAction": f'"KashFlow/{operation}"', "Content-Type": "text/xml"}
        async with self.http.post(self.sandbox.url, data=body, headers=headers, **kwargs) as r:
            return Reply(r.status, r.content_type, await r.read())

    async def raw(self, operation: str, login: Any = DEMO, **params: Any) -> Reply:
        return await self.post(operation, self.envelope(operation, login, **params))

    def parse(self, operation: str, reply: Reply, client: zeep.Client | None = None) -> Any:
        client = client or self.client
        binding = client.service._binding
        return binding.process_reply(client, binding.get(operation), _ZeepReply(reply))

    async def call(self, operation: str, login: Any = DEMO, **params: Any) -> Any:
        return self.parse(operation, await self.raw(operation, login, **params))

    async def get(self, url: str) -> Reply:
        async with self.http.get(url) as r:
            return Reply(r.status, r.content_type, await r.read())


@pytest.fixture
async def soap(sandbox: Sandbox, lenient: zeep.Client) -> AsyncIterator[Soap]:
    async with aiohttp.ClientSession() as http:
        yield Soap(sandbox, http, lenient)


def pdf_pages(document: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(document)).pages]


# --- each operation's OK answer ----------------------------------------------------------


async def test_company_details_answer_ok_with_empty_status_detail(soap: Soap) -> None:
    reply = await soap.raw("GetCompanyDetails")
    assert reply.status == 200 and reply.content_type == "text/xml"
    response = reply.xml().find("soap:Body/kf:GetCompanyDetailsResponse", NS)
    assert response is not None
    assert [etree.QName(c).localname for c in response] == [
        "GetCompanyDetailsResult",
        "Status",
        "StatusDetail",
    ]
    assert response.findtext("kf:StatusDetail", namespaces=NS) == ""
    parsed = soap.parse("GetCompanyDetails", reply)
    assert parsed.Status == "OK"
    assert parsed.GetCompanyDetailsResult.CompanyName == "Northwind Studio Ltd"
    assert parsed.GetCompanyDetailsResult.CurrencySymbol == "£"


async def test_customer_by_code_id_and_email(soap: Soap, sandbox: Sandbox) -> None:
    acme = sandbox.customer("demo", "ACME01")
    by_code = (await soap.call("GetCustomer", CustomerCode="ACME01")).GetCustomerResult
    by_id = (await soap.call("GetCustomerByID", CustomerID=acme.id)).GetCustomerByIDResult
    by_email = await soap.call("GetCustomerByEmail", CustomerEmail=acme.email.upper())
    assert by_code.CustomerID == by_id.CustomerID == acme.id
    assert by_email.GetCustomerByEmailResult.Code == "ACME01"
    # Fields after undeclared ones (Website, EC, ...) still arrive.
    assert by_code.PaymentTerms == acme.payment_terms and by_code.CurrencyID == 1


async def test_any_address_of_a_multi_address_email_field_finds_the_customer(
    soap: Soap, sandbox: Sandbox
) -> None:
    shared = next(c for c in sandbox.customers("demo") if ";" in c.email)
    assert len(shared.emails) == 2
    for address in (*shared.emails, shared.email):
        found = await soap.call("GetCustomerByEmail", CustomerEmail=address)
        assert found.GetCustomerByEmailResult.Email == shared.email


async def test_customers_lists_the_whole_book(soap: Soap, sandbox: Sandbox) -> None:
    reply = await soap.call("GetCustomers")
    codes = {c.Code for c in reply.GetCustomersResult.Customer}
    assert codes == {c.code for c in sandbox.customers("demo")}
    assert len(codes) >= 8
    assert all(c.email.endswith(".example") for c in sandbox.customers("demo"))


async def test_invoices_for_the_big_customer_are_whole_invoices(
    soap: Soap, sandbox: Sandbox
) -> None:
    acme = sandbox.customer("demo", "ACME01")
    reply = await soap.call("GetInvoicesForCustomer", CustID=acme.id)
    invoices = reply.GetInvoicesForCustomerResult.Invoice
    assert len(invoices) == 220
    assert {i.Paid for i in invoices} == {0, 1}
    for invoice in invoices:
        lines = invoice.Lines.anyType
        assert lines and all(type(line).__name__ == "InvoiceLine" for line in lines)
        assert invoice.NetAmount == sum(line.Quantity * line.Rate for line in lines)
        assert invoice.CurrencyCode == "GBP" and invoice.PermaLink


async def test_a_customer_without_invoices_gets_an_empty_result(
    soap: Soap, sandbox: Sandbox
) -> None:
    empty = next(c for c in sandbox.customers("demo") if not sandbox.invoices("demo", c.code))
    reply = await soap.raw("GetInvoicesForCustomer", CustID=empty.id)
    result = reply.xml().find(".//kf:GetInvoicesForCustomerResult", NS)
    assert result is not None and len(result) == 0
    parsed = soap.parse("GetInvoicesForCustomer", reply)
    assert parsed.Status == "OK" and parsed.GetInvoicesForCustomerResult is None


async def test_unpaid_is_account_wide_and_covers_every_kind_of_debt(
    soap: Soap, sandbox: Sandbox
) -> None:
    reply = await soap.call("GetInvoices_Unpaid")
    unpaid = reply.GetInvoices_UnpaidResult.Invoice
    assert {i.InvoiceNumber for i in unpaid} == {
        r.number for r in sandbox.invoices("demo") if not r.paid
    }
    assert all(i.Paid == 0 for i in unpaid)
    assert len({i.CustomerID for i in unpaid}) >= 4
    today = date.today()
    assert any(i.AmountPaid > 0 for i in unpaid), "a part-paid invoice"
    assert any(i.DueDate.date() < today for i in unpaid), "an overdue invoice"
    assert any(i.DueDate.date() >= today for i in unpaid), "an invoice not yet due"
    assert any(i.NetAmount < 0 for i in unpaid), "a credit note"


async def test_the_seeded_books_hold_every_case_a_client_meets(
    soap: Soap, sandbox: Sandbox
) -> None:
    records = sandbox.invoices("demo")
    assert len(records) >= 60
    assert any(r.paid for r in records)
    assert any(line.vat_rate == -1 for r in records for line in r.lines)
    assert any(len(r.lines) >= 3 for r in records)
    foreign = next(r for r in records if r.currency != "GBP")
    invoice = (await soap.call("GetInvoice", InvoiceNumber=foreign.number)).GetInvoiceResult
    assert invoice.CurrencyCode == "EUR" and invoice.ExchangeRate != 1
    exempt = next(r for r in records if any(line.vat_exempt for line in r.lines))
    invoice = (await soap.call("GetInvoice", InvoiceNumber=exempt.number)).GetInvoiceResult
    line = next(line for line in invoice.Lines.anyType if line.VatRate == -1)
    assert line.VatAmount == 0


async def test_invoice_xml_has_kashflows_real_shape(soap: Soap, sandbox: Sandbox) -> None:
    record = next(r for r in sandbox.invoices("demo") if r.live_fields)
    reply = await soap.raw("GetInvoice", InvoiceNumber=record.number)
    invoice = reply.xml().find(".//kf:GetInvoiceResult", NS)
    assert invoice is not None
    names = [etree.QName(c).localname for c in invoice]
    assert names[:7] == [
        "InvoiceDBID",
        "InvoiceNumber",
        "InvoiceDate",
        "DueDate",
        "Customer",
        "CustomerID",
        "Paid",
    ]
    real_order = [
        "CustomerReference",
        "EstimateCategory",
        "SuppressTotal",
        "ProjectID",
        "CurrencyCode",
        "ExchangeRate",
        "ReadableString",
        "Lines",
        "NetAmount",
        "VATAmount",
        "AmountPaid",
        "CustomerName",
        "PermaLink",
        "DeliveryAddress",
        "UseCustomDeliveryAddress",
    ]
    assert [n for n in names if n in real_order] == real_order
    assert {"CISRCNetAmount", "CISRCVatAmount", "IsCISReverseCharge"} <= set(names)
    assert DATETIME.match(invoice.findtext("kf:InvoiceDate", namespaces=NS) or "")
    assert invoice.findtext("kf:Paid", namespaces=NS) in ("0", "1")
    line = invoice.find("kf:Lines/kf:anyType", NS)
    assert line is not None
    assert line.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "InvoiceLine"
    assert line.find("kf:ProductName", NS) is not None


async def test_strict_zeep_fails_on_newer_fields_and_lenient_zeep_reads_them(
    soap: Soap, sandbox: Sandbox, strict: zeep.Client
) -> None:
    record = next(r for r in sandbox.invoices("demo") if r.cis_reverse_charge)
    reply = await soap.raw("GetInvoice", InvoiceNumber=record.number)
    assert b"<CISRCNetAmount>" in reply.body
    with pytest.raises(XMLParseError):
        soap.parse("GetInvoice", reply, client=strict)
    invoice = soap.parse("GetInvoice", reply).GetInvoiceResult
    assert invoice.InvoiceNumber == record.number
    assert invoice.NetAmount == record.net and invoice.AmountPaid == record.amount_paid


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "detail"),
    [
        (NOAPI, STATUS_TEXTS.api_disabled),
        (IPLOCKED, "The IP address of 127.0.0.1 is not in the access list"),
        (type(DEMO)("demo", "wrong-password"), "Incorrect username or password"),
        (type(DEMO)("nobody", "demo-api-pass"), "Incorrect username or password"),
    ],
    ids=["api-disabled", "ip-not-allowed", "wrong-password", "unknown-user"],
)
@pytest.mark.parametrize("operation", ["GetCompanyDetails", "GetInvoices_Unpaid"])
async def test_accounts_that_cannot_get_in(
    soap: Soap, login: Any, detail: str, operation: str
) -> None:
    reply = await soap.raw(operation, login)
    assert reply.status == 200
    assert reply.xml().find(f".//kf:{operation}Result", NS) is None
    parsed = soap.parse(operation, reply)
    assert (parsed.Status, parsed.StatusDetail) == ("NO", detail)


async def test_changing_the_api_password_refuses_the_old_one(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.set_api_password("demo", "new-api-pass")
    old = await soap.call("GetCompanyDetails", DEMO)
    new = await soap.call("GetCompanyDetails", type(DEMO)("demo", "new-api-pass"))
    assert (old.Status, old.StatusDetail) == ("NO", "Incorrect username or password")
    assert new.Status == "OK"
    assert sandbox.credentials("demo").password == "new-api-pass"
    with pytest.raises(ValueError, match="cannot be empty"):
        sandbox.set_api_password("demo", "")


async def test_unknown_records_answer_status_no(soap: Soap) -> None:
    by_code = await soap.call("GetCustomer", CustomerCode="NOPE99")
    by_id = await soap.call("GetCustomerByID", CustomerID=1)
    by_email = await soap.call("GetCustomerByEmail", CustomerEmail="who@nowhere.example")
    invoice = await soap.call("GetInvoice", InvoiceNumber=999_999)
    printed = await soap.call("PrintInvoice", InvoiceNumber=999_999, InvoiceNumberList="")
    assert all(r.Status == "NO" for r in (by_code, by_id, by_email, invoice, printed))
    assert "no customer" in by_code.StatusDetail and "no customer" in by_id.StatusDetail
    assert by_email.StatusDetail == "There is no customer with that email address"
    assert "no invoice" in invoice.StatusDetail and "no invoice" in printed.StatusDetail
    assert invoice.GetInvoiceResult is None and printed.PrintInvoiceResult is None


async def test_zeroed_variant_answers_ok_with_an_empty_record(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.not_found_variant = "zeroed"
    invoice = await soap.call("GetInvoice", InvoiceNumber=999_999)
    assert invoice.Status == "OK"
    assert (invoice.GetInvoiceResult.InvoiceNumber, invoice.GetInvoiceResult.InvoiceDBID) == (0, 0)
    customer = await soap.call("GetCustomer", CustomerCode="NOPE99")
    assert customer.Status == "OK" and customer.GetCustomerResult.CustomerID == 0
    printed = await soap.call("PrintInvoice", InvoiceNumber=999_999, InvoiceNumberList="")
    assert printed.Status == "OK" and not printed.PrintInvoiceResult
    # The email lookup has a published not-found text and keeps it.
    by_email = await soap.call("GetCustomerByEmail", CustomerEmail="who@nowhere.example")
    assert by_email.Status == "NO"


def _envelope(operation: str, inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<{operation} xmlns="KashFlow"><UserName>demo</UserName>'
        f"<Password>demo-api-pass</Password>{inner}</{operation}>"
        "</soap:Body></soap:Envelope>"
    ).encode()


MALFORMED = {
    "non-numeric-int": (
        "GetInvoice",
        _envelope("GetInvoice", "<InvoiceNumber>12a</InvoiceNumber>"),
    ),
    "missing-int": ("GetInvoicesForCustomer", _envelope("GetInvoicesForCustomer", "")),
    "empty-int": ("PrintInvoice", _envelope("PrintInvoice", "<InvoiceNumber/>")),
    "not-xml": ("GetCompanyDetails", b"this is not <xml"),
    "not-soap": ("GetCompanyDetails", b"<GetCompanyDetails xmlns='KashFlow'/>"),
    "entity": (
        "GetCustomer",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + _envelope("GetCustomer", "<CustomerCode>&e;</CustomerCode>").split(b"?>", 1)[1],
    ),
    "wrong-action": ("GetInvoice", _envelope("GetCompanyDetails", "")),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_requests_get_a_soap_fault(soap: Soap, case: str) -> None:
    operation, body = MALFORMED[case]
    reply = await soap.post(operation, body)
    assert reply.status == 500 and reply.content_type == "text/xml"
    assert b"root:" not in reply.body  # nothing of the entity's target leaks
    faultstring = reply.text("soap:Body/soap:Fault/faultstring")
    assert faultstring
    with pytest.raises(Fault) as raised:
        soap.parse(operation, reply)
    assert raised.value.message == faultstring


# --- fault switches --------------------------------------------------------------------


async def test_latency_delays_soap_calls_and_pdf_downloads(soap: Soap, sandbox: Sandbox) -> None:
    number = sandbox.invoices("demo")[0].number
    url = (
        await soap.call("PrintInvoice", InvoiceNumber=number, InvoiceNumberList="")
    ).PrintInvoiceResult
    sandbox.faults.latency_ms = 150
    started = time.monotonic()
    await soap.call("GetCompanyDetails")
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    assert (await soap.get(url)).status == 200
    assert time.monotonic() - started >= 0.15


async def test_error_rate_and_forced_status_detail(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.error_rate = 1.0
    sandbox.faults.error_detail = "Database timeout"
    failed = await soap.call("GetCompanyDetails")
    assert (failed.Status, failed.StatusDetail) == ("NO", "Database timeout")
    sandbox.faults.clear()
    sandbox.faults.status_detail["GetInvoices_Unpaid"] = "Too many requests"
    forced = await soap.call("GetInvoices_Unpaid")
    assert (forced.Status, forced.StatusDetail) == ("NO", "Too many requests")
    assert (await soap.call("GetCompanyDetails")).Status == "OK"


async def test_hang_outlasts_a_client_timeout_and_stop_still_returns(
    soap: Soap, sandbox: Sandbox
) -> None:
    sandbox.faults.hang = float("inf")
    body = soap.envelope("GetCompanyDetails")
    with pytest.raises(asyncio.TimeoutError):
        await soap.post("GetCompanyDetails", body, timeout=aiohttp.ClientTimeout(total=0.3))
    sandbox.faults.hang = 0.05
    assert (
        soap.parse("GetCompanyDetails", await soap.post("GetCompanyDetails", body)).Status == "OK"
    )
    sandbox.faults.hang = float("inf")
    pending = asyncio.create_task(soap.post("GetCompanyDetails", body))
    await sandbox.wait_for_call("GetCompanyDetails", count=3)
    async with asyncio.timeout(30):
        await sandbox.stop()
    with pytest.raises(aiohttp.ClientError):
        await pending


async def test_concurrent_calls_are_served_together(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.latency_ms = 200
    replies = await asyncio.gather(*(soap.call("GetCompanyDetails") for _ in range(4)))
    assert all(r.Status == "OK" for r in replies)
    assert sandbox.peak_in_flight == 4 and sandbox.in_flight == 0


async def test_http_500_without_a_soap_body(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.http_500 = True
    reply = await soap.raw("GetCompanyDetails")
    assert reply.status == 500 and reply.content_type == "text/html"
    assert b"Envelope" not in reply.body


async def test_malformed_xml_reply(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.malformed_xml = True
    reply = await soap.raw("GetCompanyDetails")
    assert reply.status == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(reply.body)


async def test_reset_closes_the_connection_for_the_chosen_operations_only(
    soap: Soap, sandbox: Sandbox
) -> None:
    sandbox.faults.reset = True
    sandbox.faults.operations = frozenset({"PrintInvoice"})
    with pytest.raises(aiohttp.ClientError):
        await soap.raw("PrintInvoice", InvoiceNumber=1001, InvoiceNumberList="")
    assert (await soap.call("GetCompanyDetails")).Status == "OK"


@pytest.mark.parametrize(("mode", "status"), [("html", 200), ("404", 404)])
async def test_bad_pdf_answers_something_that_is_not_a_pdf(
    soap: Soap, sandbox: Sandbox, mode: str, status: int
) -> None:
    number = sandbox.invoices("demo")[0].number
    url = (
        await soap.call("PrintInvoice", InvoiceNumber=number, InvoiceNumberList="")
    ).PrintInvoiceResult
    sandbox.faults.bad_pdf = mode  # type: ignore[assignment]
    reply = await soap.get(url)
    assert reply.status == status and reply.content_type == "text/html"
    assert not reply.body.startswith(b"%PDF")


# --- documents -------------------------------------------------------------------------


async def test_print_invoice_links_to_a_real_pdf_of_that_invoice(
    soap: Soap, sandbox: Sandbox
) -> None:
    record = next(r for r in sandbox.invoices("demo", "GRAN01") if not r.paid)
    url = (
        await soap.call("PrintInvoice", InvoiceNumber=record.number, InvoiceNumberList="")
    ).PrintInvoiceResult
    assert url.startswith(sandbox.base_url + "/print/") and url.endswith(".pdf")
    reply = await soap.get(url)
    assert reply.status == 200 and reply.content_type == "application/pdf"
    assert reply.body.startswith(b"%PDF")
    text = "\n".join(pdf_pages(reply.body))
    assert f"Invoice {record.number}" in text
    assert "Northwind Studio Ltd" in text and "Granite Row Builders" in text
    assert f"£{record.total:,.2f}" in text and "Outstanding" in text


async def test_print_links_are_unguessable_and_expire(
    soap: Soap, make_sandbox: Any, lenient: zeep.Client
) -> None:
    first = (
        await soap.call("PrintInvoice", InvoiceNumber=1001, InvoiceNumberList="")
    ).PrintInvoiceResult
    second = (
        await soap.call("PrintInvoice", InvoiceNumber=1001, InvoiceNumberList="")
    ).PrintInvoiceResult
    assert first != second and len(first.rsplit("/", 1)[1]) >= 30
    assert (await soap.get(first.replace("/print/", "/print/x"))).status == 404
    expired = await make_sandbox(print_ttl_seconds=0)
    quick = Soap(expired, soap.http, lenient)
    url = (
        await quick.call("PrintInvoice", InvoiceNumber=1001, InvoiceNumberList="")
    ).PrintInvoiceResult
    assert (await quick.get(url)).status == 404


async def test_a_list_prints_one_combined_pdf_in_the_order_asked(
    soap: Soap, sandbox: Sandbox
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo", "IVY01")[:3]][::-1]
    reply = await soap.call(
        "PrintInvoice", InvoiceNumber=0, InvoiceNumberList=",".join(map(str, numbers))
    )
    pages = pdf_pages((await soap.get(reply.PrintInvoiceResult)).body)
    shown = [int(m.group(1)) for page in pages for m in [re.search(r"Invoice (\d+)", page)] if m]
    assert shown == numbers


async def test_a_long_invoice_runs_to_two_pages_each_naming_the_invoice(
    soap: Soap, sandbox: Sandbox
) -> None:
    record = max(sandbox.invoices("demo"), key=lambda r: len(r.lines))
    url = (
        await soap.call("PrintInvoice", InvoiceNumber=record.number, InvoiceNumberList="")
    ).PrintInvoiceResult
    pages = pdf_pages((await soap.get(url)).body)
    assert len(pages) >= 2
    assert all(f"Invoice {record.number}" in page for page in pages)
    assert record.lines[-1].description in pages[-1]


async def test_permalink_serves_the_invoice_pdf(soap: Soap, sandbox: Sandbox) -> None:
    record = sandbox.invoices("demo", "CORV01")[0]
    invoice = (await soap.call("GetInvoice", InvoiceNumber=record.number)).GetInvoiceResult
    reply = await soap.get(invoice.PermaLink)
    assert reply.content_type == "application/pdf"
    text = "\n".join(pdf_pages(reply.body))
    assert f"Invoice {record.number}" in text and "EUR" in text


# --- the live service's variants ---------------------------------------------------------


async def test_an_invoice_names_its_customer_by_code_with_four_decimal_amounts(
    soap: Soap, sandbox: Sandbox
) -> None:
    record = next(r for r in sandbox.invoices("demo", "GRAN01") if len(r.lines) >= 2)
    reply = await soap.raw("GetInvoice", InvoiceNumber=record.number)
    invoice = reply.xml().find(".//kf:GetInvoiceResult", NS)
    assert invoice is not None
    assert invoice.findtext("kf:Customer", namespaces=NS) == "GRAN01"
    assert invoice.findtext("kf:CustomerName", namespaces=NS) == "Granite Row Builders"
    for path in ("kf:NetAmount", "kf:VATAmount", "kf:AmountPaid", "kf:ExchangeRate"):
        assert re.fullmatch(r"-?\d+\.\d{4}", invoice.findtext(path, namespaces=NS) or "")
    assert invoice.findtext("kf:NetAmount", namespaces=NS) == f"{record.net:.4f}"
    for line in invoice.findall("kf:Lines/kf:anyType", NS):
        assert re.fullmatch(r"-?\d+\.\d{4}", line.findtext("kf:Rate", namespaces=NS) or "")


async def test_an_empty_list_can_be_left_out_altogether(soap: Soap, sandbox: Sandbox) -> None:
    empty = next(c for c in sandbox.customers("demo") if not sandbox.invoices("demo", c.code))
    sandbox.faults.empty_result = "absent"
    reply = await soap.raw("GetInvoicesForCustomer", CustID=empty.id)
    response = reply.xml().find(".//kf:GetInvoicesForCustomerResponse", NS)
    assert response is not None
    assert [etree.QName(c).localname for c in response] == ["Status", "StatusDetail"]
    assert response.findtext("kf:Status", namespaces=NS) == "OK"


async def test_lines_can_come_without_xsi_type(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.untyped_lines = True
    number = sandbox.invoices("demo", "ACME01")[0].number
    reply = await soap.raw("GetInvoice", InvoiceNumber=number)
    lines = reply.xml().findall(".//kf:Lines/kf:anyType", NS)
    assert lines and all(line.get(XSI_TYPE) is None for line in lines)
    assert all(line.find("kf:Rate", NS) is not None for line in lines)


async def test_an_unknown_custid_can_be_answered_status_no(soap: Soap, sandbox: Sandbox) -> None:
    assert (await soap.call("GetInvoicesForCustomer", CustID=999_999)).Status == "OK"
    sandbox.faults.unknown_customer_id = "no"
    refused = await soap.call("GetInvoicesForCustomer", CustID=999_999)
    assert (refused.Status, refused.StatusDetail) == ("NO", STATUS_TEXTS.no_customer_with_id)
    known = sandbox.customer("demo", "ACME01").id
    assert (await soap.call("GetInvoicesForCustomer", CustID=known)).Status == "OK"


async def test_email_matching_exact_needs_the_whole_field_as_stored(
    soap: Soap, sandbox: Sandbox
) -> None:
    shared = next(c for c in sandbox.customers("demo") if ";" in c.email)
    sandbox.faults.email_match = "exact"
    assert (await soap.call("GetCustomerByEmail", CustomerEmail=shared.email)).Status == "OK"
    for near in (shared.emails[0], shared.email.upper()):
        found = await soap.call("GetCustomerByEmail", CustomerEmail=near)
        assert (found.Status, found.StatusDetail) == ("NO", STATUS_TEXTS.no_customer_with_email)


@pytest.mark.parametrize(
    ("order", "detail"),
    [
        (("credentials", "api", "ip"), "Incorrect username or password"),
        (("ip", "credentials", "api"), "The IP address of 127.0.0.1 is not in the access list"),
    ],
)
async def test_the_order_of_the_checks_decides_which_refusal_is_heard(
    soap: Soap, sandbox: Sandbox, order: Any, detail: str
) -> None:
    sandbox.faults.check_order = order
    refused = await soap.call("GetCompanyDetails", type(DEMO)(IPLOCKED.username, "wrong"))
    assert (refused.Status, refused.StatusDetail) == ("NO", detail)


async def test_auto_auth_ip_adds_the_callers_address_with_the_right_key(
    soap: Soap, sandbox: Sandbox
) -> None:
    wrong = await soap.call("AutoAuthIP", IPLOCKED, appName="Probe", AutoAuthKey="nope")
    assert (wrong.Status, wrong.StatusDetail) == ("NO", STATUS_TEXTS.auto_auth_refused)
    assert (await soap.call("AutoAuthIP", NOAPI, appName="x", AutoAuthKey="k")).Status == "NO"
    assert (await soap.call("GetCompanyDetails", IPLOCKED)).Status == "NO"
    added = await soap.call(
        "AutoAuthIP", IPLOCKED, appName="KashFlow Permalink", AutoAuthKey=IPLOCKED_AUTO_AUTH_KEY
    )
    assert (added.Status, added.AutoAuthIPResult) == ("OK", 1)
    assert sandbox.allowed_ips("iplocked") == {"127.0.0.1"}
    company = (await soap.call("GetCompanyDetails", IPLOCKED)).GetCompanyDetailsResult
    assert company.CompanyName == "Lockwood Joinery"


async def test_throttling_answers_429_with_retry_after_then_recovers(
    soap: Soap, sandbox: Sandbox
) -> None:
    sandbox.faults.throttle = 2
    sandbox.faults.retry_after = "3"
    for _ in range(2):
        async with soap.http.post(
            sandbox.url,
            data=soap.envelope("GetCompanyDetails"),
            headers={"SOAPAction": '"KashFlow/GetCompanyDetails"', "Content-Type": "text/xml"},
        ) as resp:
            assert (resp.status, resp.headers.get("Retry-After")) == (429, "3")
    assert (await soap.call("GetCompanyDetails")).Status == "OK"
    sandbox.faults.throttle, sandbox.faults.throttle_status = 1, 503
    sandbox.faults.retry_after = None
    reply = await soap.raw("GetCompanyDetails")
    assert reply.status == 503


async def print_url(soap: Soap, number: int = 1001, listed: str = "") -> str:
    reply = await soap.call("PrintInvoice", InvoiceNumber=number, InvoiceNumberList=listed)
    return str(reply.PrintInvoiceResult)


async def test_the_pdf_can_be_served_as_octet_stream(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.pdf_content_type = "application/octet-stream"
    reply = await soap.get(await print_url(soap))
    assert reply.content_type == "application/octet-stream" and reply.body.startswith(b"%PDF-")


@pytest.mark.parametrize(
    ("redirect", "host"), [("same-host", "127.0.0.1"), ("other-host", "localhost")]
)
async def test_the_pdf_can_sit_behind_a_redirect(
    soap: Soap, sandbox: Sandbox, redirect: str, host: str
) -> None:
    sandbox.faults.pdf_redirect = redirect  # type: ignore[assignment]
    url = await print_url(soap)
    async with soap.http.get(url, allow_redirects=False) as first:
        assert first.status == 302
        location = first.headers["Location"]
    target = urljoin(url, location)
    assert urlsplit(target).hostname == host and "/files/" in target
    if host == "127.0.0.1":
        reply = await soap.get(target)
        assert reply.status == 200 and reply.body.startswith(b"%PDF-")


async def test_print_urls_can_expire_early(soap: Soap, sandbox: Sandbox) -> None:
    sandbox.faults.pdf_expires_after = 60
    lasting = await print_url(soap)
    sandbox.faults.pdf_expires_after = 0
    expired = await print_url(soap)
    assert (await soap.get(lasting)).status == 200
    assert (await soap.get(expired)).status == 404


async def test_a_list_can_be_printed_as_its_first_invoice_only(
    soap: Soap, sandbox: Sandbox
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo", "IVY01")[:3]]
    sandbox.faults.list_print = "first"
    url = await print_url(soap, 0, ",".join(map(str, numbers)))
    pages = pdf_pages((await soap.get(url)).body)
    assert len(pages) == 1 and f"Invoice {numbers[0]}" in pages[0]


async def test_answers_can_set_a_session_cookie_and_requests_record_cookies(
    soap: Soap, sandbox: Sandbox
) -> None:
    sandbox.faults.set_cookie = True
    sessions = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as keeping:
        for _ in range(2):
            async with keeping.post(
                sandbox.url,
                data=soap.envelope("GetCompanyDetails"),
                headers={"SOAPAction": '"KashFlow/GetCompanyDetails"', "Content-Type": "text/xml"},
            ) as resp:
                sessions.append(resp.cookies["ASP.NET_SessionId"].value)
    assert sessions[0] != sessions[1]
    # A client that keeps cookies sends the first back with the second request.
    assert [c.cookie for c in sandbox.calls] == [False, True]


# --- changes, records, isolation ------------------------------------------------------


async def test_added_invoice_shows_up_and_payment_clears_it(soap: Soap, sandbox: Sandbox) -> None:
    customer = sandbox.customer("demo", "ELM01")
    number = sandbox.add_invoice(
        "demo", "ELM01", [NewLine("Wedding cake photography", Decimal("2"), Decimal("150.00"))]
    )
    listed = await soap.call("GetInvoicesForCustomer", CustID=customer.id)
    invoice = listed.GetInvoicesForCustomerResult.Invoice[-1]
    assert invoice.InvoiceNumber == number == max(r.number for r in sandbox.invoices("demo"))
    assert (invoice.NetAmount, invoice.VATAmount, invoice.Paid) == (300, 60, 0)
    unpaid = (await soap.call("GetInvoices_Unpaid")).GetInvoices_UnpaidResult.Invoice
    assert number in {i.InvoiceNumber for i in unpaid}

    url = (
        await soap.call("PrintInvoice", InvoiceNumber=number, InvoiceNumberList="")
    ).PrintInvoiceResult
    assert "£360.00" in pdf_pages((await soap.get(url)).body)[0]
    sandbox.mark_paid("demo", number)
    paid = (await soap.call("GetInvoice", InvoiceNumber=number)).GetInvoiceResult
    assert (paid.Paid, paid.AmountPaid) == (1, Decimal("360.00"))
    unpaid = (await soap.call("GetInvoices_Unpaid")).GetInvoices_UnpaidResult.Invoice
    assert number not in {i.InvoiceNumber for i in unpaid}
    # The cached PDF is not served for the changed invoice.
    outstanding = pdf_pages((await soap.get(url)).body)[0].split("Outstanding", 1)[1]
    assert outstanding.strip().startswith("£0.00")


async def test_accounts_see_only_their_own_books(soap: Soap, sandbox: Sandbox) -> None:
    company = (await soap.call("GetCompanyDetails", SECOND)).GetCompanyDetailsResult
    assert company.CompanyName == "Harbour & Hill LLP"
    customers = (await soap.call("GetCustomers", SECOND)).GetCustomersResult.Customer
    assert 2 <= len(customers) <= 3
    assert not {c.Code for c in customers} & {c.code for c in sandbox.customers("demo")}
    assert (await soap.call("GetCustomer", SECOND, CustomerCode="ACME01")).Status == "NO"
    demo_number = sandbox.invoices("demo")[0].number
    assert (await soap.call("GetInvoice", SECOND, InvoiceNumber=demo_number)).Status == "NO"


async def test_calls_are_recorded_and_no_password_reaches_logs_or_records(
    soap: Soap, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await soap.call("GetCompanyDetails")
    await soap.call("GetCustomers", SECOND)
    await soap.call("GetCompanyDetails", type(DEMO)("demo", "typo-secret"))
    url = (
        await soap.call("PrintInvoice", InvoiceNumber=1001, InvoiceNumberList="")
    ).PrintInvoiceResult
    await soap.get(url)
    assert [(c.operation, c.username) for c in sandbox.calls] == [
        ("GetCompanyDetails", "demo"),
        ("GetCustomers", "second"),
        ("GetCompanyDetails", "demo"),
        ("PrintInvoice", "demo"),
        (PDF_FETCH, "demo"),
    ]
    recorded = repr(sandbox.calls) + caplog.text
    for secret in ("demo-api-pass", "second-api-pass", "typo-secret", url.rsplit("/", 1)[1]):
        assert secret not in recorded


async def test_the_wsdl_is_served_with_the_sandbox_as_its_address(
    soap: Soap, sandbox: Sandbox
) -> None:
    reply = await soap.get(sandbox.wsdl_url)
    assert reply.status == 200
    address = reply.xml().find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None and address.get("location") == sandbox.url


def test_runs_standalone_and_prints_its_url() -> None:
    command = [sys.executable, "-m", "kashflow.sandbox", "--port", "0", "--latency-ms", "1"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            logins = [process.stdout.readline().strip() for _ in range(4)]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/service\.asmx", url)
            assert "demo / demo-api-pass" in logins
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0
