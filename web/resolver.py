"""The resolver: what a client sees when they open a permalink, and the PDFs it offers.

``GET /l/{token}`` opens the token, checks the registry for a revocation, asks KashFlow
for the company, the customer and the invoices in the link's scope (live, so invoices
raised after the link was made appear) and renders the page. The PDF routes check the
same things, then stream one invoice's PDF or every invoice in scope merged into one.

The resolver stores no credentials: each request opens the token, calls KashFlow and
forgets. Token failures from one address are counted; past the configured limit the
address is answered 429 for a while, which makes guessing hopeless.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from kashflow.client import Account, KashFlow
from kashflow.concurrent import calls_at_once
from kashflow.documents import check_pdf, fetch_pdfs, merge_pdfs
from kashflow.errors import NotFound
from kashflow.models import Invoice
from permalink.activity import LINK_OPENED, PDF_DOWNLOADED, ActivityLog
from permalink.keyring import Keyring
from permalink.limits import Throttle
from permalink.links import InvalidLink, Link, open_link
from permalink.mail import format_date, format_money
from permalink.registry import LinkRegistry
from permalink.scopes import MAX_KASHFLOW_ID, Scope, Statement, invoice_in_scope, statement
from web.errors import LinkNotValid, TooManyAttempts
from web.security import client_address

log = logging.getLogger(__name__)

T = TypeVar("T")

PAGE_TEMPLATE: Final = "web/invoices.html"
#: Route names, for ``url_for`` in views, templates and the settings pages.
ROUTE_PAGE: Final = "link"
ROUTE_INVOICE_PDF: Final = "link.invoice_pdf"
ROUTE_ALL_PDF: Final = "link.all_pdf"
ROUTE_UNPAID_PDF: Final = "link.unpaid_pdf"

#: Set on every PDF response so the page's script knows the download has started.
DOWNLOAD_COOKIE: Final = "pdf_ready"
_CHUNK: Final = 64 * 1024
#: One invoice's PDF, below a link's page (the route and the page's row links share it).
_INVOICE_PDF: Final = "/invoice/{number}.pdf"
_MAX_FILENAME: Final = 150

STATUS_LABELS: Final = {
    "paid": "Paid",
    "part-paid": "Part paid",
    "due": "Due",
    "overdue": "Overdue",
}
SCOPE_HEADINGS: Final = {"all": "Your invoices", "unpaid": "Your unpaid invoices"}


# -- presentation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One invoice as the page shows it."""

    number: int
    issued: date
    issued_text: str
    due: date
    due_text: str
    total: str
    paid: str
    outstanding: str
    status: str
    status_label: str
    pdf_url: str


def invoice_row(invoice: Invoice, today: date, pdf_url: str) -> InvoiceRow:
    status = invoice.status(today)
    return InvoiceRow(
        number=invoice.number,
        issued=invoice.issued,
        issued_text=format_date(invoice.issued),
        due=invoice.due,
        due_text=format_date(invoice.due),
        total=format_money(invoice.total, invoice.currency),
        paid=format_money(invoice.total - invoice.outstanding, invoice.currency),
        outstanding=format_money(invoice.outstanding, invoice.currency),
        status=status,
        status_label=STATUS_LABELS.get(status, status),
        pdf_url=pdf_url,
    )


def scope_heading(scope: Scope) -> str:
    if scope.kind == "invoice":
        return f"Invoice {scope.invoice}"
    return SCOPE_HEADINGS[scope.kind]


def pdf_filename(company: str, customer_code: str, what: str, day: date) -> str:
    """``<Company>-<CustomerCode>-<what>-<date>.pdf`` as the visitor should see it."""
    return f"{company}-{customer_code}-{what}-{day.isoformat()}.pdf"


def content_disposition(filename: str) -> str:
    """An attachment header with a safe ASCII name and the exact name per RFC 5987/6266."""
    # Path separators and control characters have no place in a saved file's name.
    cleaned = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in filename)
    cleaned = cleaned.replace("/", "-").replace("\\", "-").strip()
    ascii_name = unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name)
    ascii_name = re.sub(r"-{2,}", "-", ascii_name).strip("-.")
    if not ascii_name.lower().endswith(".pdf") or len(ascii_name) <= len(".pdf"):
        ascii_name = "invoices.pdf"
    if len(ascii_name) > _MAX_FILENAME:
        ascii_name = ascii_name[: _MAX_FILENAME - 4].rstrip("-.") + ".pdf"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


# -- the views -----------------------------------------------------------------------------


class Resolver:
    """The permalink views, bound to what they need; :meth:`add_routes` names the routes."""

    def __init__(
        self,
        *,
        public_base_url: str,
        pdf_concurrency: int,
        merge_workers: int,
        kashflow: KashFlow,
        keyring: Keyring,
        registry: LinkRegistry,
        activity: ActivityLog,
        throttle: Throttle,
        clock: Callable[[], float],
    ) -> None:
        self._base_url = public_base_url.rstrip("/")
        self._secure_cookie = self._base_url.startswith("https://")
        self._pdf_concurrency = pdf_concurrency
        self._merge_workers = merge_workers
        self._kashflow = kashflow
        self._keyring = keyring
        self._registry = registry
        self._activity = activity
        self._throttle = throttle
        self._clock = clock
        self._merge_pool: ThreadPoolExecutor | None = None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        # aiohttp's default segment pattern excludes braces, which would send a mangled
        # token to the generic 404 instead of the one "not valid" page.
        link = "/l/{token:[^/]+}"
        router.add_get(link, self.page, name=ROUTE_PAGE)
        # PDF routes answer GET only: a HEAD would cost the same KashFlow calls for nothing.
        router.add_get(
            link + _INVOICE_PDF.format(number="{number:[0-9]+}"),
            self.invoice_pdf,
            name=ROUTE_INVOICE_PDF,
            allow_head=False,
        )
        router.add_get(link + "/all.pdf", self.all_pdf, name=ROUTE_ALL_PDF, allow_head=False)
        router.add_get(
            link + "/unpaid.pdf", self.unpaid_pdf, name=ROUTE_UNPAID_PDF, allow_head=False
        )

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: the threads that merge PDFs, sized so merges cannot starve the
        process (extra requests queue for a thread instead)."""
        pool = ThreadPoolExecutor(max_workers=self._merge_workers, thread_name_prefix="pdf-merge")
        self._merge_pool = pool
        try:
            yield
        finally:
            self._merge_pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    # -- GET /l/{token} ---------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        link = await self._open(request, now)
        account = self._kashflow.account(link.credentials)
        try:
            found = await statement(account, link.customer_id, link.scope)
        except NotFound:
            # The customer (or the link's one invoice) is gone: the link no longer works.
            raise LinkNotValid from None
        await self._record_open(link, found, now)
        context = self._page_context(request, link, found, date.fromtimestamp(now))
        return aiohttp_jinja2.render_template(PAGE_TEMPLATE, request, context)

    def _page_context(
        self, request: web.Request, link: Link, found: Statement, today: date
    ) -> dict[str, object]:
        token = request.match_info["token"]
        router = request.app.router
        # One route lookup for the page, not one per row: a long list has hundreds.
        page = str(router[ROUTE_PAGE].url_for(token=token))
        rows = [
            invoice_row(inv, today, page + _INVOICE_PDF.format(number=inv.number))
            for inv in found.invoices
        ]
        totals = sorted(found.outstanding_by_currency().items())
        return {
            "company": found.company,
            "customer": found.customer,
            "heading": scope_heading(link.scope),
            "scope": link.scope.kind,
            "invoices": rows,
            "outstanding": [format_money(amount, currency) for currency, amount in totals],
            "today": today,
            "today_text": format_date(today),
            "page_url": self._base_url + str(router[ROUTE_PAGE].url_for(token=token)),
            "all_pdf_url": str(router[ROUTE_ALL_PDF].url_for(token=token)),
            "unpaid_pdf_url": (
                str(router[ROUTE_UNPAID_PDF].url_for(token=token))
                if link.scope.kind == "all" and any(r.status != "paid" for r in rows)
                else None
            ),
        }

    # -- the PDFs ---------------------------------------------------------------------------

    async def invoice_pdf(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        link = await self._open(request, now)
        number = int(request.match_info["number"])
        if not 1 <= number <= MAX_KASHFLOW_ID:
            raise NotFound("no invoice")
        account = self._kashflow.account(link.credentials)
        async with calls_at_once() as group:
            details = group.create_task(account.company_details())
            group.create_task(invoice_in_scope(account, link.customer_id, link.scope, number))
        company = details.result()
        pdf = await account.invoice_pdf(number)
        await self._off_loop(check_pdf, pdf)
        await self._record_download(link, now, f"invoice {number}")
        name = pdf_filename(
            company.name, link.customer_code, f"invoice-{number}", date.fromtimestamp(now)
        )
        return await self._send_pdf(request, pdf, name)

    async def all_pdf(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        link = await self._open(request, now)
        return await self._merged(request, link, link.scope, now)

    async def unpaid_pdf(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        link = await self._open(request, now)
        if link.scope.kind != "all":
            # Only an "all" link offers this; anything else answers like a missing invoice.
            raise NotFound("no invoice")
        return await self._merged(request, link, Scope("unpaid"), now)

    async def _merged(
        self, request: web.Request, link: Link, scope: Scope, now: float
    ) -> web.StreamResponse:
        account = self._kashflow.account(link.credentials)
        try:
            found = await statement(account, link.customer_id, scope)
        except NotFound:
            raise LinkNotValid from None  # as on the page: the customer is gone
        if not found.invoices:
            raise NotFound("no invoices")
        # Same order as the page (newest first), so page one of the file is the top row.
        numbers = found.numbers
        pdf = await self._merge(account, numbers)
        what = "unpaid-invoices" if scope.kind == "unpaid" else "invoices"
        await self._record_download(link, now, f"{what.replace('-', ' ')} ({len(numbers)})")
        name = pdf_filename(found.company.name, link.customer_code, what, date.fromtimestamp(now))
        return await self._send_pdf(request, pdf, name)

    async def _merge(self, account: Account, numbers: Sequence[int]) -> bytes:
        pdfs = await fetch_pdfs(account, numbers, concurrency=self._pdf_concurrency)
        return await self._off_loop(merge_pdfs, pdfs)

    async def _off_loop(self, work: Callable[[Any], T], arg: Any) -> T:
        """PDF work runs on the bounded merge threads, never on the event loop."""
        if self._merge_pool is None:
            return await asyncio.to_thread(work, arg)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._merge_pool, work, arg)

    async def _send_pdf(
        self, request: web.Request, pdf: bytes, filename: str
    ) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/pdf"
        response.content_length = len(pdf)
        response.headers["Content-Disposition"] = content_disposition(filename)
        # Not a secret: a flag the page's script watches to end its "preparing" state.
        response.set_cookie(
            DOWNLOAD_COOKIE,
            "1",
            path="/",
            max_age=120,
            samesite="Strict",
            secure=self._secure_cookie,
        )
        await response.prepare(request)
        view = memoryview(pdf)
        try:
            for start in range(0, len(pdf), _CHUNK):
                await response.write(view[start : start + _CHUNK])
            await response.write_eof()
        except ConnectionResetError:
            log.info("client left before its PDF was sent (%d bytes)", len(pdf))
        return response

    # -- opening a link ---------------------------------------------------------------------

    async def _open(self, request: web.Request, now: float) -> Link:
        """The link in the URL, or LinkNotValid / TooManyAttempts; counts failures per peer."""
        address = client_address(request)
        key = f"invalid-link:{address}"
        wait = self._throttle.delay(key, now)
        if wait > 0:
            raise TooManyAttempts(wait)
        reason: str
        try:
            link: Link | None = open_link(request.match_info["token"], self._keyring, now=int(now))
        except InvalidLink as exc:
            link, reason = None, exc.reason
        if link is not None and await self._registry.is_revoked(
            link.link_id, link.account, link.issued
        ):
            link, reason = None, "revoked"
        if link is None:
            wait = self._throttle.hit(key, now)
            log.info("link not valid (%s) from %s", reason, address)
            if wait > 0:
                raise TooManyAttempts(wait)
            raise LinkNotValid
        return link

    # -- what happened ----------------------------------------------------------------------

    async def _record_open(self, link: Link, found: Statement, now: float) -> None:
        customer = found.customer
        await self._safely(
            lambda: self._registry.record_open(link.link_id, int(now)),
            lambda: self._activity.record(
                link.account,
                kind=LINK_OPENED,
                outcome="ok",
                subject=f"{customer.code} {customer.name}",
                detail=f"scope {link.scope}, {len(found.invoices)} invoices shown",
                at=now,
            ),
        )

    async def _record_download(self, link: Link, now: float, what: str) -> None:
        await self._safely(
            lambda: self._activity.record(
                link.account,
                kind=PDF_DOWNLOADED,
                outcome="ok",
                subject=link.customer_code,
                detail=what,
                at=now,
            )
        )

    async def _safely(self, *writes: Callable[[], Awaitable[object]]) -> None:
        # The visitor came for their invoices: a failed bookkeeping write is logged, not
        # turned into an error page.
        for write in writes:
            try:
                await write()
            except (sqlite3.Error, ValueError) as exc:
                log.warning("could not record link activity: %s", type(exc).__name__)


__all__ = [
    "DOWNLOAD_COOKIE",
    "ROUTE_ALL_PDF",
    "ROUTE_INVOICE_PDF",
    "ROUTE_PAGE",
    "ROUTE_UNPAID_PDF",
    "InvoiceRow",
    "Resolver",
    "content_disposition",
    "invoice_row",
    "pdf_filename",
    "scope_heading",
]
