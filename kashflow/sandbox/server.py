"""The sandbox KashFlow service: an aiohttp server speaking KashFlow's SOAP API over real HTTP.

``Sandbox`` owns the seeded ledger, the fault and variant switches and the record of
calls; it serves the SOAP endpoint, the project's WSDL (``?WSDL``), the PDFs PrintInvoice
links to (one invoice, or several in one document with ``InvoiceNumberList``) and the
invoices' PermaLinks. Request bodies carry credentials, so nothing here logs them and the
access log is off (PDF URLs are capabilities too).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from kashflow.models import Credentials
from kashflow.sandbox import wire
from kashflow.sandbox.faults import DEFAULT_CHECK_ORDER, PDF_FETCH, Call, Check, Faults
from kashflow.sandbox.ledger import Account, Ledger, NewLine, password_matches
from kashflow.sandbox.printing import PdfCache, PrintLinks, document_title, render_invoices
from kashflow.sandbox.records import Company, CustomerRecord, InvoiceRecord
from kashflow.sandbox.seed import build_ledger
from kashflow.sandbox.texts import STATUS_TEXTS

log = logging.getLogger(__name__)

SOAP_PATH: Final = "/api/service.asmx"
_XML: Final = "text/xml"
_DEFAULT_LINE: Final = NewLine("Additional design work", Decimal("1"), Decimal("100.00"))


@dataclass(frozen=True, slots=True)
class Answer:
    """What an operation handler decided: a result (None = absent), Status, StatusDetail."""

    result: str | None
    status: str = "OK"
    detail: str = ""


def no(detail: str) -> Answer:
    return Answer(None, "NO", detail)


Operation = Callable[[Account, wire.SoapRequest], Answer]


class Sandbox:
    """A KashFlow SOAP service on a real TCP socket, with seeded accounts and fault switches."""

    def __init__(
        self,
        *,
        latency_ms: float = 0,
        seed: int = 7,
        today: date | None = None,
        print_ttl_seconds: float = 600.0,
    ) -> None:
        self.faults = Faults(latency_ms=latency_ms)
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.today = today or date.today()
        self._ledger: Ledger = build_ledger(seed=seed, today=self.today)
        self._random = random.Random(seed)
        self._print_links = PrintLinks(print_ttl_seconds)
        self._pdfs = PdfCache()
        # The ASP.NET_SessionId values PDF answers have set (``Faults.pdf_needs_cookie``).
        self._pdf_sessions: set[str] = set()
        self._rendering: dict[tuple[object, ...], asyncio.Future[bytes]] = {}
        self._invoice_xml: dict[tuple[str, int, bool], tuple[InvoiceRecord, str]] = {}
        self._customer_xml: dict[tuple[str, int], str] = {}
        self._new_call = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url = ""
        self._operations: dict[str, Operation] = {
            "GetCompanyDetails": self._company_details,
            "GetCustomer": self._customer_by_code,
            "GetCustomerByID": self._customer_by_id,
            "GetCustomerByEmail": self._customer_by_email,
            "GetCustomers": self._all_customers,
            "GetInvoice": self._invoice,
            "GetInvoicesForCustomer": self._invoices_for_customer,
            "GetInvoices_Unpaid": self._unpaid,
            "PrintInvoice": self._print,
        }

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        self._stopping = asyncio.Event()
        runner = web.AppRunner(create_app(self), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        if bound_host in ("0.0.0.0", "::"):  # noqa: S104 - reading the bind address, not binding
            bound_host = "127.0.0.1"
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        log.info("KashFlow sandbox listening on %s", self.url)

    async def stop(self) -> None:
        self._stopping.set()  # wakes calls parked by the hang fault
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("the sandbox has not been started")
        return self._base_url

    @property
    def url(self) -> str:
        """The SOAP endpoint (what a client's WSDL location should point at)."""
        return self.base_url + SOAP_PATH

    @property
    def wsdl_url(self) -> str:
        return self.url + "?WSDL"

    @property
    def pdf_hosts(self) -> str:
        """The host its print URLs name: what a gateway's PDF host list must allow."""
        return pdf_hosts_for(self.url)

    def allowed_ips(self, account: str) -> frozenset[str]:
        """The account's API allow-list (what AutoAuthIP adds to)."""
        return frozenset(self._ledger.account(account).allowed_ips)

    # --- read-only views and changes for tests and the demo -------------------------------

    @property
    def accounts(self) -> tuple[str, ...]:
        return tuple(self._ledger.accounts)

    def credentials(self, account: str) -> Credentials:
        found = self._ledger.account(account)
        return Credentials(found.username, found.password)

    def company(self, account: str) -> Company:
        return self._ledger.account(account).company

    def customers(self, account: str) -> tuple[CustomerRecord, ...]:
        books = self._ledger.account(account)
        return tuple(books.customers[i] for i in sorted(books.customers))

    def customer(self, account: str, code: str) -> CustomerRecord:
        found = self._ledger.account(account).customer_by_code(code)
        if found is None:
            raise KeyError(f"{account!r} has no customer {code!r}")
        return found

    def invoices(self, account: str, customer_code: str | None = None) -> tuple[InvoiceRecord, ...]:
        books = self._ledger.account(account)
        if customer_code is None:
            return tuple(books.invoices[n] for n in sorted(books.invoices))
        return tuple(books.invoices_for(self.customer(account, customer_code).id))

    def invoice(self, account: str, number: int) -> InvoiceRecord:
        return self._ledger.account(account).invoices[number]

    def change_password(self, account: str, password: str) -> None:
        """The account's API password changes, as the accountant would do it in KashFlow."""
        self._ledger.account(account).password = password

    def set_customer_email(self, account: str, code: str, email: str) -> None:
        """The customer's Email field changes, as typed into KashFlow (anything goes)."""
        books = self._ledger.account(account)
        customer = self.customer(account, code)
        books.customers[customer.id] = replace(customer, email=email)
        self._customer_xml.pop((books.username, customer.id), None)

    def add_invoice(
        self,
        account: str,
        customer_code: str,
        lines: Sequence[NewLine] = (_DEFAULT_LINE,),
        *,
        issued: date | None = None,
        due: date | None = None,
        reference: str = "",
        currency: str | None = None,
        exchange_rate: Decimal = Decimal("1.0000"),
        amount_paid: Decimal = Decimal("0.00"),
        live_fields: bool = False,
    ) -> int:
        """Raise a new invoice (as if typed into KashFlow); returns its number."""
        books = self._ledger.account(account)
        record = books.add_invoice(
            self.customer(account, customer_code),
            lines,
            issued=issued or self.today,
            due=due,
            reference=reference,
            currency=currency,
            exchange_rate=exchange_rate,
            amount_paid=amount_paid,
            live_fields=live_fields,
        )
        return record.number

    def mark_paid(self, account: str, number: int, amount: Decimal | None = None) -> None:
        """Record a payment: by default the whole outstanding amount (``Paid`` becomes 1)."""
        self._ledger.account(account).mark_paid(number, amount)

    def set_api_password(self, account: str, password: str) -> None:
        """Change the account's API password, as its owner would in KashFlow's API settings:
        from the next call on, only the new password signs in (links sealing the old one
        stop opening)."""
        if not password:
            raise ValueError("an API password cannot be empty")
        self._ledger.account(account).password = password

    async def wait_for_call(
        self, operation: str | None = None, *, count: int = 1, within: float = 60.0
    ) -> Call:
        """The ``count``-th recorded call of ``operation`` (any when None), waiting for it."""
        async with asyncio.timeout(within):
            while True:
                found = [c for c in self.calls if operation in (None, c.operation)]
                if len(found) >= count:
                    return found[count - 1]
                await self._new_call.wait()

    # --- HTTP -----------------------------------------------------------------------------

    def _record(self, operation: str, username: str, request: web.Request) -> None:
        cookie = "Cookie" in request.headers
        self.calls.append(Call(operation, username, time.monotonic(), request.remote or "", cookie))
        event, self._new_call = self._new_call, asyncio.Event()
        event.set()

    async def _delay(self) -> None:
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)

    async def handle_soap(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._soap(request)
        finally:
            self.in_flight -= 1

    async def _soap(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            call = wire.parse_request(body, request.headers.get("SOAPAction"))
        except wire.SoapFault as fault:
            self._record("", "", request)
            await self._delay()
            return _xml(wire.fault(fault.faultstring, fault.faultcode), status=500)
        self._record(call.operation, call.username, request)
        await self._delay()
        if self.faults.take_throttle(call.operation):
            return self._throttled()
        if self.faults.applies_to(call.operation):
            broken = await self._transport_fault(request)
            if broken is not None:
                return broken
        answer = self._answer(call, request.remote or "")
        return _xml(wire.response(call.operation, answer.result, answer.status, answer.detail))

    async def _transport_fault(self, request: web.Request) -> web.StreamResponse | None:
        faults = self.faults
        if faults.hang is not None:
            try:
                await asyncio.wait_for(self._stopping.wait(), faults.hang)
            except TimeoutError:
                pass  # answer late, as asked
            else:
                return _drop(request)
        if faults.reset:
            return _drop(request)
        if faults.http_500:
            return web.Response(
                status=500,
                text="<html><body><h1>Server Error</h1></body></html>",
                content_type="text/html",
            )
        if faults.malformed_xml:
            whole = wire.response("GetCompanyDetails", None)
            return _xml(whole[: len(whole) // 2])
        return None

    def _throttled(self) -> web.Response:
        headers = {}
        if self.faults.retry_after is not None:
            headers["Retry-After"] = self.faults.retry_after
        return web.Response(
            status=self.faults.throttle_status, text=STATUS_TEXTS.throttled, headers=headers
        )

    def _refusal(self, account: Account | None, password: str, peer: str) -> str | None:
        """Why KashFlow turns this caller away (None: it lets them in), checking in the
        order the switch says; a check left out of the order is still made, last."""
        order: tuple[Check, ...] = self.faults.check_order
        order += tuple(c for c in DEFAULT_CHECK_ORDER if c not in order)
        for check in order:
            if check == "credentials":
                if account is None or not password_matches(account, password):
                    return STATUS_TEXTS.bad_credentials
            elif account is None:
                continue  # an unknown username has no API settings to check
            elif check == "api" and not account.api_enabled:
                return STATUS_TEXTS.api_disabled
            elif check == "ip" and not account.ip_allowed(peer):
                return STATUS_TEXTS.ip_not_allowed.format(ip=peer)
        return None

    def _answer(self, call: wire.SoapRequest, peer: str) -> Answer:
        if call.operation == "AutoAuthIP":
            return self._auto_auth_ip(call, peer)
        account = self._ledger.accounts.get(call.username)
        refused = self._refusal(account, call.password, peer)
        if refused is not None or account is None:
            return no(refused or STATUS_TEXTS.bad_credentials)
        forced = self.faults.status_detail.get(call.operation)
        if forced is not None:
            return no(forced)
        if (
            self.faults.error_rate > 0
            and self.faults.applies_to(call.operation)
            and self._random.random() < self.faults.error_rate
        ):
            return no(self.faults.error_detail)
        return self._operations[call.operation](account, call)

    # --- operations -------------------------------------------------------------------------

    def _customer_fields(self, account: Account, customer: CustomerRecord) -> str:
        key = (account.username, customer.id)
        cached = self._customer_xml.get(key)
        if cached is None:
            cached = self._customer_xml[key] = wire.customer_fields(customer)
        return cached

    def _invoice_fields(self, account: Account, invoice: InvoiceRecord) -> str:
        untyped = self.faults.untyped_lines
        key = (account.username, invoice.number, untyped)
        cached = self._invoice_xml.get(key)
        if cached is not None and cached[0] is invoice:
            return cached[1]
        permalink = f"{self.base_url}/documents/invoice/{invoice.permalink_key}"
        customer = account.customers[invoice.customer_id]
        fields = wire.invoice_fields(invoice, customer, permalink, untyped_lines=untyped)
        self._invoice_xml[key] = (invoice, fields)
        return fields

    def _zeroed_or_no(self, result_name: str, zeroed: str, detail: str) -> Answer:
        if self.faults.not_found_variant == "zeroed":
            return Answer(wire.wrap(result_name, zeroed))
        return no(detail)

    def _company_details(self, account: Account, call: wire.SoapRequest) -> Answer:
        return Answer(wire.wrap("GetCompanyDetailsResult", wire.company_fields(account.company)))

    def _one_customer(
        self, account: Account, op: str, found: CustomerRecord | None, detail: str
    ) -> Answer:
        if found is None:
            return self._zeroed_or_no(f"{op}Result", wire.ZEROED_CUSTOMER, detail)
        return Answer(wire.wrap(f"{op}Result", self._customer_fields(account, found)))

    def _customer_by_code(self, account: Account, call: wire.SoapRequest) -> Answer:
        found = account.customer_by_code(call.strings["CustomerCode"])
        return self._one_customer(account, "GetCustomer", found, STATUS_TEXTS.no_customer_with_code)

    def _customer_by_id(self, account: Account, call: wire.SoapRequest) -> Answer:
        found = account.customers.get(call.ints["CustomerID"])
        return self._one_customer(
            account, "GetCustomerByID", found, STATUS_TEXTS.no_customer_with_id
        )

    def _customer_by_email(self, account: Account, call: wire.SoapRequest) -> Answer:
        exact = self.faults.email_match == "exact"
        found = account.customer_by_email(call.strings["CustomerEmail"], exact=exact)
        if found is None:
            # The one lookup with a published not-found text: always Status NO.
            return no(STATUS_TEXTS.no_customer_with_email)
        return Answer(wire.wrap("GetCustomerByEmailResult", self._customer_fields(account, found)))

    def _all_customers(self, account: Account, call: wire.SoapRequest) -> Answer:
        ordered = sorted(account.customers.values(), key=lambda c: c.name.lower())
        fragments = (self._customer_fields(account, c) for c in ordered)
        return Answer(wire.array("GetCustomersResult", "Customer", fragments, **self._empty()))

    def _empty(self) -> dict[str, bool]:
        return {"absent_if_empty": self.faults.empty_result == "absent"}

    def _invoice(self, account: Account, call: wire.SoapRequest) -> Answer:
        found = account.invoices.get(call.ints["InvoiceNumber"])
        if found is None:
            return self._zeroed_or_no(
                "GetInvoiceResult", wire.ZEROED_INVOICE, STATUS_TEXTS.no_invoice
            )
        return Answer(wire.wrap("GetInvoiceResult", self._invoice_fields(account, found)))

    def _invoice_list(self, account: Account, name: str, rows: list[InvoiceRecord]) -> Answer:
        fragments = (self._invoice_fields(account, i) for i in rows)
        return Answer(wire.array(name, "Invoice", fragments, **self._empty()))

    def _invoices_for_customer(self, account: Account, call: wire.SoapRequest) -> Answer:
        customer_id = call.ints["CustID"]
        if customer_id not in account.customers and self.faults.unknown_customer_id == "no":
            return no(STATUS_TEXTS.no_customer_with_id)
        # Otherwise an unknown CustID is simply a customer with no invoices.
        rows = account.invoices_for(customer_id)
        return self._invoice_list(account, "GetInvoicesForCustomerResult", rows)

    def _unpaid(self, account: Account, call: wire.SoapRequest) -> Answer:
        return self._invoice_list(account, "GetInvoices_UnpaidResult", account.unpaid())

    def _print(self, account: Account, call: wire.SoapRequest) -> Answer:
        numbers = _print_numbers(call.ints["InvoiceNumber"], call.strings["InvoiceNumberList"])
        if not numbers or any(n not in account.invoices for n in numbers):
            if self.faults.not_found_variant == "zeroed":
                return Answer("<PrintInvoiceResult />")
            return no(STATUS_TEXTS.no_invoice)
        if self.faults.list_print == "first":
            numbers = numbers[:1]
        key = self._print_links.issue(
            account.username, numbers, ttl_seconds=self.faults.pdf_expires_after
        )
        return Answer(wire.el("PrintInvoiceResult", f"{self.base_url}/print/{key}.pdf"))

    def _auto_auth_ip(self, call: wire.SoapRequest, peer: str) -> Answer:
        # Not subject to the IP check: adding the caller's address is the point of it.
        account = self._ledger.sign_in(call.username, call.password)
        if account is None:
            return no(STATUS_TEXTS.bad_credentials)
        if not account.api_enabled:
            return no(STATUS_TEXTS.api_disabled)
        given = call.strings["AutoAuthKey"].strip().upper().encode()
        wanted = account.auto_auth_key.upper().encode()
        if not wanted or not secrets.compare_digest(given, wanted):
            return no(STATUS_TEXTS.auto_auth_refused)
        account.allowed_ips.add(peer)
        return Answer(wire.el("AutoAuthIPResult", str(len(account.allowed_ips))))

    # --- documents --------------------------------------------------------------------------

    async def handle_print(self, request: web.Request) -> web.StreamResponse:
        redirect = self.faults.pdf_redirect
        if redirect != "none":
            self._record(PDF_FETCH, "", request)
            await self._delay()
            path = f"/files/{request.match_info['key']}.pdf"
            if redirect == "other-host":
                # The same server under another name: a different host to a client.
                path = f"http://localhost:{urlsplit(self.base_url).port}{path}"
            raise web.HTTPFound(path)
        return await self.handle_printed(request)

    async def handle_printed(self, request: web.Request) -> web.StreamResponse:
        job = self._print_links.find(request.match_info["key"])
        account = self._ledger.accounts[job.account] if job else None
        numbers = job.numbers if job else ()
        return await self._serve_pdf(request, account, numbers)

    async def handle_permalink(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        for account in self._ledger.accounts.values():
            for invoice in account.invoices.values():
                if invoice.permalink_key == key:
                    return await self._serve_pdf(request, account, (invoice.number,))
        return await self._serve_pdf(request, None, ())

    async def _serve_pdf(
        self, request: web.Request, account: Account | None, numbers: tuple[int, ...]
    ) -> web.StreamResponse:
        self._record(PDF_FETCH, account.username if account else "", request)
        await self._delay()
        if self.faults.take_throttle(PDF_FETCH):
            return self._throttled()
        if self.faults.bad_pdf == "404" or account is None:
            return web.Response(status=404, text=_NOT_FOUND_PAGE, content_type="text/html")
        if self.faults.pdf_needs_cookie:
            outside = self._outside_session(request)
            if outside is not None:
                return outside
        if self.faults.bad_pdf == "html":
            return web.Response(text=_SIGN_IN_PAGE, content_type="text/html")
        invoices = [account.invoices[n] for n in numbers]
        document = await self._render(account, invoices)
        first = invoices[0]
        name = (
            f"{document_title(first).replace(' ', '-')}.pdf"
            if len(invoices) == 1
            else ("Invoices.pdf")
        )
        return web.Response(
            body=document,
            headers={
                "Content-Type": self.faults.pdf_content_type,
                "Content-Disposition": f'inline; filename="{name}"',
                "Cache-Control": "private, no-store",
            },
        )

    def _outside_session(self, request: web.Request) -> web.StreamResponse | None:
        """What a PDF request without a session gets, as ASP.NET answers one: a redirect
        to the same URL setting the session cookie, then, if it came back without the
        cookie, the sign-in page. None when the request carries a session it was given."""
        if request.cookies.get(_SESSION_COOKIE, "") in self._pdf_sessions:
            return None
        if request.query.get(_COOKIE_PROBE) == "1":
            response = web.Response(text=_SIGN_IN_PAGE, content_type="text/html")
        else:
            again = request.rel_url.update_query({_COOKIE_PROBE: "1"})
            response = web.Response(status=302, headers={"Location": str(again)})
        session = secrets.token_hex(12)
        self._pdf_sessions.add(session)
        response.headers.add("Set-Cookie", f"{_SESSION_COOKIE}={session}; path=/; HttpOnly")
        return response

    async def _render(self, account: Account, invoices: list[InvoiceRecord]) -> bytes:
        key = PdfCache.key(account.username, invoices)
        cached = self._pdfs.get(key)
        if cached is not None:
            return cached
        pending = self._rendering.get(key)
        if pending is None:
            pairs = [(i, account.customers[i.customer_id]) for i in invoices]
            job: Awaitable[bytes] = asyncio.to_thread(render_invoices, account.company, pairs)
            pending = self._rendering[key] = asyncio.ensure_future(job)
            pending.add_done_callback(lambda _done: self._rendering.pop(key, None))
        document = await asyncio.shield(pending)
        self._pdfs.put(key, document)
        return document

    async def handle_get(self, request: web.Request) -> web.StreamResponse:
        if "wsdl" not in (k.lower() for k in request.query):
            return web.Response(text=_SERVICE_PAGE, content_type="text/html")
        wsdl = resources.files("kashflow").joinpath("wsdl/kashflow.wsdl").read_text("utf-8")
        wsdl = wsdl.replace("https://securedwebapp.com/api/service.asmx", self.url)
        return web.Response(text=wsdl, content_type=_XML)


def pdf_hosts_for(url: str) -> str:
    """The PDF host list that lets a gateway fetch the print URLs of the sandbox serving
    ``url`` (they are on the same loopback host as its SOAP endpoint)."""
    return urlsplit(url).hostname or ""


def _print_numbers(number: int, number_list: str) -> tuple[int, ...]:
    if number:
        return (number,)
    # List mode: InvoiceNumber 0 and "1,2,3" in InvoiceNumberList.
    numbers = []
    for part in number_list.split(","):
        text = part.strip()
        if not text.isascii() or not text.isdigit():
            return ()
        numbers.append(int(text))
    return tuple(numbers)


def _xml(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_XML, charset="utf-8")


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without a byte of answer (a reset, as the client sees it)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


_SERVICE_PAGE: Final = "<html><body><h1>KashFlowAPI (sandbox)</h1></body></html>"
_NOT_FOUND_PAGE: Final = "<html><body><h1>404 - File or directory not found.</h1></body></html>"
_SESSION_COOKIE: Final = "ASP.NET_SessionId"
#: The query parameter ASP.NET adds when it redirects to find out whether cookies work.
_COOKIE_PROBE: Final = "AspxAutoDetectCookieSupport"
_SIGN_IN_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>KashFlow - Log in</title></head>"
    "<body><form><input name='username'><input name='password' type='password'></form>"
    "</body></html>"
)


def create_app(sandbox: Sandbox) -> web.Application:
    """The sandbox's routes; ``Sandbox.start`` serves this on a TCP socket."""
    app = web.Application(client_max_size=1024**2)
    app.router.add_post(SOAP_PATH, sandbox.handle_soap)
    app.router.add_get(SOAP_PATH, sandbox.handle_get)
    app.router.add_get("/print/{key}.pdf", sandbox.handle_print)
    app.router.add_get("/files/{key}.pdf", sandbox.handle_printed)
    app.router.add_get("/documents/invoice/{key}", sandbox.handle_permalink)

    async def session_cookie(request: web.Request, response: web.StreamResponse) -> None:
        if sandbox.faults.set_cookie:
            # What an ASP.NET site with sessions sends: a client must not carry it along.
            # (A header, not set_cookie(): cookies are turned into headers before this hook.)
            session = secrets.token_hex(12)
            response.headers.add("Set-Cookie", f"ASP.NET_SessionId={session}; path=/; HttpOnly")

    app.on_response_prepare.append(session_cookie)
    return app
