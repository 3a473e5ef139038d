"""The typed async gateway to KashFlow's SOAP API.

One coroutine per operation, credentials bound once (:class:`Account`), ``Status`` checked
on every reply and turned into the exceptions of :mod:`kashflow.errors`, frozen models out.
HTTP goes through one aiohttp session per :class:`KashFlow` with bounded connections and
timeouts, and no cookie jar: one session serves every account, so nothing one answer sets
may ride along with another account's call. Reads are retried with a bounded, jittered
backoff when KashFlow cannot be reached or says it is busy (:mod:`kashflow.retry`). The
PDF a PrintInvoice URL points at is fetched only from the hosts allowed
(:mod:`kashflow.pdfhosts`, :mod:`kashflow.download`). Neither credentials nor request
bodies nor document URLs are ever logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from kashflow import mapping
from kashflow.download import BUSY, Download, ReplyTooLarge, download, read_capped
from kashflow.errors import (
    ApiDisabled,
    BadCredentials,
    BadDocument,
    IpNotAuthorised,
    KashFlowError,
    NotFound,
    Rejected,
    Unavailable,
)
from kashflow.models import CompanyDetails, Credentials, Customer, Invoice, address_key
from kashflow.pdfhosts import DEFAULT_PDF_HOSTS, PdfHosts
from kashflow.retry import Backoff, retry_after_seconds, retrying
from kashflow.soap import Reply, SoapFault, UnreadableReply, service

log = logging.getLogger(__name__)

ENDPOINT = "https://securedwebapp.com/api/service.asmx"
MAX_REPLY_BYTES = 20 * 1024 * 1024  # what KashFlow's own .NET client allows
MAX_PDF_BYTES = 20 * 1024 * 1024
#: The name KashFlow shows beside an address AutoAuthIP adds to the account's allow-list.
APP_NAME = "KashFlow Permalink"
# Replies bigger than this are read on a worker thread so the event loop keeps serving.
_THREAD_READ_BYTES = 256 * 1024


def classify(detail: str) -> type[KashFlowError]:
    """Map a ``Status`` NO ``StatusDetail`` to the error a caller must tell apart."""
    text = detail.lower()
    if "incorrect username or password" in text:
        return BadCredentials
    if "ip address" in text and "access list" in text:
        return IpNotAuthorised
    if "no customer" in text or "no invoice" in text:
        return NotFound
    if "api" in text and ("not enabled" in text or "disabled" in text):
        return ApiDisabled
    if "temporarily unavailable" in text or "try again later" in text:
        # KashFlow's own "busy" answer: worth another try, like a failed connection.
        return Unavailable
    return Rejected


class KashFlow:
    """A KashFlow endpoint: owns the HTTP session; :meth:`account` binds credentials.

    ``pdf_hosts`` is where PrintInvoice URLs may be fetched from (a comma list or entries,
    see :mod:`kashflow.pdfhosts`). ``print_batch`` above 1 lets a merged document ask for
    that many invoices per PrintInvoice call (``InvoiceNumberList``), for accounts where
    ``kashflow-permalink probe`` showed KashFlow answering with one merged PDF.
    """

    def __init__(
        self,
        endpoint: str = ENDPOINT,
        *,
        timeout: float = 20.0,
        connections: int = 32,
        retries: int = 2,
        retry_delay: float = 0.2,
        max_retry_wait: float = 10.0,
        pdf_hosts: str | Sequence[str] | PdfHosts = DEFAULT_PDF_HOSTS,
        max_pdf_bytes: int = MAX_PDF_BYTES,
        print_batch: int = 0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.backoff = Backoff(retries, retry_delay, max_retry_wait)
        self.pdf_hosts = PdfHosts.parse(pdf_hosts)
        self.max_pdf_bytes = max_pdf_bytes
        self.print_batch = max(0, print_batch)
        self._connections = connections
        self._session = session
        self._own_session = session is None
        self._service = service()

    def account(self, credentials: Credentials) -> Account:
        return Account(self, credentials)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # One session serves every account: a cookie one answer sets must never
                # travel with another account's call or document fetch.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> KashFlow:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        credentials: Credentials,
        operation: str,
        params: Mapping[str, Any],
        *,
        skip: frozenset[str] = frozenset(),
    ) -> Reply:
        """Send one operation and return its reply once ``Status`` is OK (fields named in
        ``skip`` are left unread)."""
        body = self._envelope(credentials, operation, params)
        return await retrying(operation, lambda: self._attempt(operation, body, skip), self.backoff)

    async def exchange(
        self, credentials: Credentials, operation: str, params: Mapping[str, Any]
    ) -> tuple[int, bytes]:
        """One round trip as it is, for ``kashflow-permalink probe``: the HTTP status and
        the reply body, with no retry and no Status check."""
        return await self._send(operation, self._envelope(credentials, operation, params))

    def _envelope(
        self, credentials: Credentials, operation: str, params: Mapping[str, Any]
    ) -> bytes:
        return self._service.envelope(
            operation,
            {"UserName": credentials.username, "Password": credentials.password, **params},
        )

    async def _attempt(self, operation: str, body: bytes, skip: frozenset[str]) -> Reply:
        reply = await self._post(operation, body, skip)
        if reply.status != "OK":
            error = classify(reply.detail)
            log.info("KashFlow %s answered NO: %s", operation, error.__name__)
            raise error(reply.detail)
        return reply

    async def _send(
        self, operation: str, body: bytes, *, busy_is_unavailable: bool = False
    ) -> tuple[int, bytes]:
        try:
            async with self._http().post(
                self.endpoint, data=body, headers=_soap_headers(operation)
            ) as resp:
                if busy_is_unavailable and resp.status in BUSY:
                    # Rate limited or overloaded: worth another try, when KashFlow says.
                    raise Unavailable(
                        f"HTTP {resp.status}",
                        retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                    )
                return resp.status, await read_capped(resp, MAX_REPLY_BYTES)
        except ReplyTooLarge:
            raise Unavailable("reply too large") from None
        except TimeoutError as exc:
            raise Unavailable("timed out") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(type(exc).__name__) from exc

    async def _post(self, operation: str, body: bytes, skip: frozenset[str]) -> Reply:
        status, content = await self._send(operation, body, busy_is_unavailable=True)
        try:
            if len(content) > _THREAD_READ_BYTES:
                return await asyncio.to_thread(self._service.read, operation, content, skip=skip)
            return self._service.read(operation, content, skip=skip)
        except SoapFault as exc:
            # ASMX answers a malformed request with HTTP 500 and a soap:Fault.
            raise Rejected(f"SOAP fault: {exc.faultstring}") from exc
        except UnreadableReply as exc:
            raise Unavailable(f"HTTP {status}, {exc}") from exc

    async def download(self, url: str, *, session: aiohttp.ClientSession | None = None) -> Download:
        """GET what a PrintInvoice URL points at, within the allow-list and the size cap, as
        it came back (one try). ``session`` replaces the cookie-less one (the probe's)."""
        return await download(
            session or self._http(), url, self.pdf_hosts, max_bytes=self.max_pdf_bytes
        )

    async def fetch_pdf(self, url: str) -> bytes:
        """GET the document PrintInvoice pointed at; it must really be a PDF."""
        try:
            fetched = await retrying("PDF", lambda: self.download(url), self.backoff)
        except BadDocument as exc:
            # The operator's to fix (the PDF host list) or KashFlow's: say which host.
            log.warning("KashFlow PDF not fetched: %s", exc.detail)
            raise
        if not fetched.is_pdf:
            kind = fetched.content_type.split(";", 1)[0].strip() or "no content type"
            raise BadDocument(f"HTTP {fetched.status}, {kind}, not a PDF")
        return fetched.body


def _soap_headers(operation: str) -> dict[str, str]:
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"KashFlow/{operation}"'}


class Account:
    """One KashFlow account's view of the API: credentials bound once."""

    def __init__(self, kashflow: KashFlow, credentials: Credentials) -> None:
        self._kf = kashflow
        self.credentials = credentials

    @property
    def username(self) -> str:
        return self.credentials.username

    @property
    def print_batch(self) -> int:
        """Invoices per PrintInvoice call for a merged document (0 or 1: one per call)."""
        return self._kf.print_batch

    async def _call(
        self, operation: str, *, skip: frozenset[str] = frozenset(), **params: Any
    ) -> Any:
        reply = await self._kf.call(self.credentials, operation, params, skip=skip)
        return reply.result

    async def company_details(self) -> CompanyDetails:
        result = await self._call("GetCompanyDetails")
        if not result:
            raise Rejected("no company details")
        return mapping.company(result)

    async def customer_by_code(self, code: str) -> Customer:
        return _customer(await self._call("GetCustomer", CustomerCode=code))

    async def customer_by_id(self, customer_id: int) -> Customer:
        return _customer(await self._call("GetCustomerByID", CustomerID=customer_id))

    async def customer_by_email(self, email: str) -> Customer:
        """The customer whose Email field holds ``email``.

        How KashFlow matches is unpublished: it may compare the whole field, missing the
        second address of a field holding two, or a difference in case. On "no customer"
        the book is read and each address compared by :func:`~kashflow.models.address_key`
        (case, Unicode form and IDN spelling aside; lowest CustomerID first), so a client
        is found by any address on file either way.
        """
        try:
            return _customer(await self._call("GetCustomerByEmail", CustomerEmail=email))
        except NotFound:
            if not email.strip():
                raise
            # Spellings KashFlow may not equate: case, Unicode forms, an IDN domain
            # written as Unicode on one side and xn-- on the other.
            wanted = address_key(email)
            for customer in sorted(await self.customers(), key=lambda c: c.id):
                if wanted in (address_key(address) for address in customer.emails):
                    return customer
            raise

    async def customers(self) -> list[Customer]:
        rows = await self._call("GetCustomers") or []
        return [mapping.customer(row) for row in rows if row.get("CustomerID")]

    async def invoices_for_customer(self, customer_id: int, *, lines: bool = True) -> list[Invoice]:
        """All the customer's invoices; ``lines=False`` leaves their lines out (empty),
        which halves the work on a long list that shows no lines."""
        rows = (
            await self._call("GetInvoicesForCustomer", skip=_skip(lines), CustID=customer_id) or []
        )
        return [mapping.invoice(row) for row in rows if row.get("InvoiceNumber")]

    async def unpaid_invoices(self, *, lines: bool = True) -> list[Invoice]:
        """Every unpaid invoice of the account (KashFlow has no per-customer form)."""
        rows = await self._call("GetInvoices_Unpaid", skip=_skip(lines)) or []
        return [mapping.invoice(row) for row in rows if row.get("InvoiceNumber")]

    async def invoice(self, number: int) -> Invoice:
        row = await self._call("GetInvoice", InvoiceNumber=number)
        # KashFlow may also say "not found" as OK with a zeroed invoice.
        if not row or not row.get("InvoiceNumber") or not row.get("InvoiceDBID"):
            raise NotFound(f"no invoice {number}")
        return mapping.invoice(row)

    async def print_invoice_url(self, number: int) -> str:
        url = await self._call("PrintInvoice", InvoiceNumber=number, InvoiceNumberList="")
        if not url:
            raise NotFound(f"no invoice {number}")
        return str(url)

    async def print_invoices_url(self, numbers: Sequence[int]) -> str:
        """PrintInvoice in list mode: ``InvoiceNumber`` 0 and the numbers, comma-separated,
        in ``InvoiceNumberList``; KashFlow answers with one URL for all of them."""
        if not numbers:
            raise ValueError("no invoice numbers to print")
        listed = ",".join(str(int(n)) for n in numbers)
        url = await self._call("PrintInvoice", InvoiceNumber=0, InvoiceNumberList=listed)
        if not url:
            raise NotFound("no invoice among those listed")
        return str(url)

    async def invoice_pdf(self, number: int) -> bytes:
        """The invoice as PDF bytes: PrintInvoice gives a URL, which is fetched at once."""
        return await self._kf.fetch_pdf(await self.print_invoice_url(number))

    async def invoices_pdf(self, numbers: Sequence[int]) -> bytes:
        """The document PrintInvoice prints for several invoices at once (one call, one
        fetch). Whether it holds every one of them is for the caller to check:
        :func:`kashflow.documents.merged_pdf` does, and falls back when it does not."""
        return await self._kf.fetch_pdf(await self.print_invoices_url(numbers))

    async def auto_auth_ip(self, key: str, *, app_name: str = APP_NAME) -> int:
        """Ask KashFlow to add this server's address to the account's API allow-list
        (``AutoAuthIP``, with the AutoAuth key KashFlow shows the account owner). Called
        only when the owner asks; KashFlow's answer number is returned as it is."""
        result = await self._call("AutoAuthIP", appName=app_name, AutoAuthKey=key.strip())
        return int(result or 0)


_NO_LINES = frozenset({"Lines"})


def _skip(lines: bool) -> frozenset[str]:
    return frozenset() if lines else _NO_LINES


def _customer(row: dict[str, Any] | None) -> Customer:
    # KashFlow may also say "not found" as OK with a zeroed customer.
    if not row or not row.get("CustomerID"):
        raise NotFound("no customer")
    return mapping.customer(row)
