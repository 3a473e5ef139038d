"""The typed async gateway to KashFlow's SOAP API.

One coroutine per operation, credentials bound once (:class:`Account`), ``Status`` checked
on every reply and turned into the exceptions of :mod:`kashflow.errors`, frozen models out.
HTTP goes through one aiohttp session per :class:`KashFlow` with bounded connections and
timeouts; reads are retried with a short, bounded backoff when KashFlow cannot be reached.
Neither credentials nor request bodies are ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

import aiohttp

from kashflow import mapping
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
from kashflow.models import CompanyDetails, Credentials, Customer, Invoice
from kashflow.soap import Reply, SoapFault, UnreadableReply, service

log = logging.getLogger(__name__)

ENDPOINT = "https://securedwebapp.com/api/service.asmx"
MAX_REPLY_BYTES = 20 * 1024 * 1024  # what KashFlow's own .NET client allows
MAX_PDF_BYTES = 20 * 1024 * 1024
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
    """A KashFlow endpoint: owns the HTTP session; :meth:`account` binds credentials."""

    def __init__(
        self,
        endpoint: str = ENDPOINT,
        *,
        timeout: float = 20.0,
        connections: int = 32,
        retries: int = 2,
        retry_delay: float = 0.2,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
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
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
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
        body = self._service.envelope(
            operation,
            {"UserName": credentials.username, "Password": credentials.password, **params},
        )
        return await self._with_retries(operation, body, skip)

    async def _attempt(self, operation: str, body: bytes, skip: frozenset[str]) -> Reply:
        reply = await self._post(operation, body, skip)
        if reply.status != "OK":
            error = classify(reply.detail)
            log.info("KashFlow %s answered NO: %s", operation, error.__name__)
            raise error(reply.detail)
        return reply

    async def _with_retries(self, operation: str, body: bytes, skip: frozenset[str]) -> Reply:
        attempt = 0
        while True:
            try:
                return await self._attempt(operation, body, skip)
            except Unavailable as exc:
                attempt += 1
                if attempt > self.retries:
                    raise
                delay = self.retry_delay * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning(
                    "KashFlow %s unavailable (%s), retry %d in %.2fs",
                    operation,
                    exc.detail,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _post(self, operation: str, body: bytes, skip: frozenset[str]) -> Reply:
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"KashFlow/{operation}"',
        }
        try:
            async with self._http().post(self.endpoint, data=body, headers=headers) as resp:
                content = await _read_capped(resp, MAX_REPLY_BYTES)
                status = resp.status
        except TimeoutError as exc:
            raise Unavailable("timed out") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(type(exc).__name__) from exc
        try:
            if len(content) > _THREAD_READ_BYTES:
                return await asyncio.to_thread(self._service.read, operation, content, skip=skip)
            return self._service.read(operation, content, skip=skip)
        except SoapFault as exc:
            # ASMX answers a malformed request with HTTP 500 and a soap:Fault.
            raise Rejected(f"SOAP fault: {exc.faultstring}") from exc
        except UnreadableReply as exc:
            raise Unavailable(f"HTTP {status}, {exc}") from exc

    async def fetch_pdf(self, url: str) -> bytes:
        """GET the document PrintInvoice pointed at; it must really be a PDF."""
        if not url.startswith(("https://", "http://")):
            raise BadDocument("PrintInvoice did not return a URL")
        try:
            async with self._http().get(url) as resp:
                content = await _read_capped(resp, MAX_PDF_BYTES)
                status, ctype = resp.status, resp.content_type
        except TimeoutError as exc:
            raise Unavailable("timed out fetching the PDF") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(type(exc).__name__) from exc
        if status != 200 or ctype != "application/pdf" or not content.startswith(b"%PDF"):
            raise BadDocument(f"HTTP {status}, {ctype}")
        return content


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise Unavailable("reply too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise Unavailable("reply too large")
        chunks.append(chunk)
    return b"".join(chunks)


class Account:
    """One KashFlow account's view of the API: credentials bound once."""

    def __init__(self, kashflow: KashFlow, credentials: Credentials) -> None:
        self._kf = kashflow
        self.credentials = credentials

    @property
    def username(self) -> str:
        return self.credentials.username

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
        return _customer(await self._call("GetCustomerByEmail", CustomerEmail=email))

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

    async def invoice_pdf(self, number: int) -> bytes:
        """The invoice as PDF bytes: PrintInvoice gives a URL, which is fetched at once."""
        return await self._kf.fetch_pdf(await self.print_invoice_url(number))


_NO_LINES = frozenset({"Lines"})


def _skip(lines: bool) -> frozenset[str]:
    return frozenset() if lines else _NO_LINES


def _customer(row: dict[str, Any] | None) -> Customer:
    # KashFlow may also say "not found" as OK with a zeroed customer.
    if not row or not row.get("CustomerID"):
        raise NotFound("no customer")
    return mapping.customer(row)
