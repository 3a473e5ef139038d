"""The resolver: what a client sees when they open a permalink, and the PDFs it offers.

``GET /l/{token}`` opens the token, checks the registry for a revocation, asks KashFlow
for the company, the customer and the invoices in the link's scope (live, so invoices
raised after the link was made appear) and renders the page in the client's language
(the accountant's choice for them, else the browser's, else the account's default):
what is to pay and how, then the invoices (see :mod:`web.client_page`). A link to one
invoice — and ``GET /l/{token}/invoice/{number}`` for any invoice in scope — shows that
invoice with its lines, VAT and totals. The PDF routes check the same things, then
stream one invoice's PDF or the statement pack of every invoice in scope
(:mod:`permalink.statement_pack`); ``/l/{token}/logo`` serves the business's logo.

The resolver stores no credentials: each request opens the token, calls KashFlow and
forgets. Token failures from one address are counted (:mod:`web.opening`); past the
configured limit the address is answered 429 for a while, which makes guessing hopeless.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Final
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from babel.numbers import format_decimal, format_percent

from kashflow.errors import NotFound
from kashflow.models import Invoice, InvoiceLine
from permalink.activity import LINK_OPENED, PDF_DOWNLOADED
from permalink.business import ClientSettings
from permalink.core import Core
from permalink.db import StoreError
from permalink.i18n import locale_of, negotiate
from permalink.limits import ThrottlePolicy
from permalink.links import Link
from permalink.presentation import (
    InvoiceRow,
    balances,
    customer_label,
    document_filename,
    document_title,
    format_date,
    format_money,
    invoice_row,
    lead,
    scope_heading,
    status_label,
    status_of,
)
from permalink.scopes import MAX_KASHFLOW_ID, Scope, Statement
from web.client_page import Query, listing
from web.errors import LinkNotValid
from web.opening import LinkOpener

log = logging.getLogger(__name__)

PAGE_TEMPLATE: Final = "web/invoices.html"
INVOICE_TEMPLATE: Final = "web/invoice.html"
#: Route names, for ``url_for`` in views, templates and the settings pages.
ROUTE_PAGE: Final = "link"
ROUTE_INVOICE: Final = "link.invoice"
ROUTE_INVOICE_PDF: Final = "link.invoice_pdf"
ROUTE_ALL_PDF: Final = "link.all_pdf"
ROUTE_UNPAID_PDF: Final = "link.unpaid_pdf"
ROUTE_LOGO: Final = "link.logo"

#: Set on every PDF response so the page's script knows the download has started.
DOWNLOAD_COOKIE: Final = "pdf_ready"
_CHUNK: Final = 64 * 1024
#: One invoice's PDF, below a link's page (the route and the page's row links share it).
_INVOICE_PDF: Final = "/invoice/{number}.pdf"
_INVOICE_PAGE: Final = "/invoice/{number}"
_MAX_FILENAME: Final = 150


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

    def __init__(self, core: Core, *, invalid_link_policy: ThrottlePolicy) -> None:
        self._core = core
        self._base_url = core.config.public_base_url
        self._secure_cookie = self._base_url.startswith("https://")
        self._opener = LinkOpener(core, invalid_link_policy)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        # aiohttp's default segment pattern excludes braces, which would send a mangled
        # token to the generic 404 instead of the one "not valid" page.
        link = "/l/{token:[^/]+}"
        router.add_get(link, self.page, name=ROUTE_PAGE)
        router.add_get(
            link + _INVOICE_PAGE.format(number="{number:[0-9]+}"),
            self.invoice_page,
            name=ROUTE_INVOICE,
        )
        router.add_get(link + "/logo", self.logo, name=ROUTE_LOGO)
        # HEAD is answered like GET without the body (download managers and link checkers
        # ask it first): the same checks and KashFlow calls, so the same status and length.
        router.add_get(
            link + _INVOICE_PDF.format(number="{number:[0-9]+}"),
            self.invoice_pdf,
            name=ROUTE_INVOICE_PDF,
        )
        router.add_get(link + "/all.pdf", self.all_pdf, name=ROUTE_ALL_PDF)
        router.add_get(link + "/unpaid.pdf", self.unpaid_pdf, name=ROUTE_UNPAID_PDF)

    # -- GET /l/{token} ---------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        now = self._core.clock()
        link = await self._open(request, now)
        found, settings = await self._statement(link, link.scope)
        await self._record_open(link, found, now)
        return self._render(request, link, found, settings, now, request.match_info["token"])

    async def preview(self, request: web.Request, link: Link, token: str) -> web.Response:
        """The page ``link``'s client sees, shown to the accountant ("view as the client"):
        the same page, in the client's language, marked as a preview, and not counted as
        an opening."""
        found, settings = await self._statement(link, link.scope)
        return self._render(request, link, found, settings, self._core.clock(), token)

    def _render(
        self,
        request: web.Request,
        link: Link,
        found: Statement,
        settings: ClientSettings,
        now: float,
        token: str,
    ) -> web.Response:
        language = self._language(request, settings)
        today = date.fromtimestamp(now)
        if link.scope.invoice is not None:
            context = self._invoice_context(request, link, found, settings, language, today, token)
            template = INVOICE_TEMPLATE
        else:
            context = self._page_context(request, link, found, settings, language, today, token)
            template = PAGE_TEMPLATE
        if request.match_info.get("token") != token:
            context["preview_of"] = found.customer.name
        return aiohttp_jinja2.render_template(template, request, context)

    async def invoice_page(self, request: web.Request) -> web.StreamResponse:
        """One invoice of the link's scope with its lines, VAT and totals."""
        now = self._core.clock()
        link = await self._open(request, now)
        number = int(request.match_info["number"])
        if not 1 <= number <= MAX_KASHFLOW_ID:
            raise NotFound("no invoice")
        found = await self._core.invoice_detail(
            link.credentials, link.customer_id, link.scope, number
        )
        settings = await self._core.client_settings(link.account, link.customer_code)
        language = self._language(request, settings)
        context = self._invoice_context(
            request,
            link,
            found,
            settings,
            language,
            date.fromtimestamp(now),
            request.match_info["token"],
        )
        return aiohttp_jinja2.render_template(INVOICE_TEMPLATE, request, context)

    async def logo(self, request: web.Request) -> web.StreamResponse:
        """The business's logo, from our own origin (the page may show nothing else)."""
        link = await self._open(request, self._core.clock())
        png = await self._core.store.business.logo(link.account)
        if png is None:
            raise web.HTTPNotFound()
        return web.Response(body=png, content_type="image/png")

    async def _statement(self, link: Link, scope: Scope) -> tuple[Statement, ClientSettings]:
        try:
            return await asyncio.gather(
                self._core.statement(link.credentials, link.customer_id, scope),
                self._core.client_settings(link.account, link.customer_code),
            )
        except NotFound:
            # The customer (or the link's one invoice) is gone: the link no longer works.
            raise LinkNotValid from None

    @staticmethod
    def _language(request: web.Request, settings: ClientSettings) -> str:
        return settings.language(browser=negotiate(request.headers.get("Accept-Language")))

    def _common(
        self,
        request: web.Request,
        link: Link,
        found: Statement,
        settings: ClientSettings,
        language: str,
        today: date,
        token: str,
    ) -> dict[str, object]:
        """What every page of a link shows: who, what is to pay and how, the downloads."""
        router = request.app.router
        business = settings.business
        owing = [i for i in found.invoices if i.outstanding > 0] or list(found.invoices)
        return {
            "language": language,
            "company": found.company,
            "company_address": ", ".join(
                part for part in (*found.company.address, found.company.postcode) if part
            ),
            "customer": found.customer,
            "today": today,
            "today_text": format_date(today, language),
            "page_url": self._base_url + str(router[ROUTE_PAGE].url_for(token=token)),
            "list_url": str(router[ROUTE_PAGE].url_for(token=token)),
            "logo_url": (
                str(router[ROUTE_LOGO].url_for(token=token)) + f"?v={business.logo_version}"
                if business.has_logo
                else ""
            ),
            "balances": balances(found.invoices, language),
            "lead": lead(found.invoices, today, language),
            "payment": business.payment,
            "reference": business.payment.reference_for(
                found.customer.code, [i.number for i in owing]
            ),
        }

    def _page_context(
        self,
        request: web.Request,
        link: Link,
        found: Statement,
        settings: ClientSettings,
        language: str,
        today: date,
        token: str,
    ) -> dict[str, object]:
        router = request.app.router
        # One route lookup for the page, not one per row: a long list has hundreds.
        page = str(router[ROUTE_PAGE].url_for(token=token))

        def row(invoice: Invoice) -> InvoiceRow:
            number = invoice.number
            return invoice_row(
                invoice,
                today,
                page + _INVOICE_PDF.format(number=number),
                language,
                page + _INVOICE_PAGE.format(number=number),
            )

        query = Query.read(request.query)
        if link.scope.kind != "all" and query.view == "unpaid":
            query = Query(
                view="all", search=query.search, sort=query.sort, descending=query.descending
            )
        shown = listing(found.invoices, query, today, row, language)
        unpaid = any(i.outstanding != 0 and not i.paid for i in found.invoices)
        return {
            **self._common(request, link, found, settings, language, today, token),
            "heading": scope_heading(link.scope, language),
            "scope": link.scope.kind,
            "invoices": found.invoices,
            "listing": shown,
            "all_pdf_url": str(router[ROUTE_ALL_PDF].url_for(token=token)),
            "unpaid_pdf_url": (
                str(router[ROUTE_UNPAID_PDF].url_for(token=token))
                if link.scope.kind == "all" and unpaid
                else None
            ),
        }

    def _invoice_context(
        self,
        request: web.Request,
        link: Link,
        found: Statement,
        settings: ClientSettings,
        language: str,
        today: date,
        token: str,
    ) -> dict[str, object]:
        router = request.app.router
        (invoice,) = found.invoices
        locale = locale_of(language)
        money = invoice.currency

        def line(item: InvoiceLine) -> dict[str, str]:
            return {
                "description": item.description,
                "quantity": format_decimal(item.quantity, locale=locale),
                "rate": format_money(item.rate, money, language),
                "vat": ""
                if item.vat_exempt
                else format_percent(item.vat_rate / 100, locale=locale),
                "net": format_money(item.net, money, language),
            }

        status = status_of(invoice, today)
        common = self._common(request, link, found, settings, language, today, token)
        common["reference"] = settings.business.payment.reference_for(
            found.customer.code, [invoice.number]
        )
        return {
            **common,
            "invoice": invoice,
            "heading": document_title(invoice, language),
            "row": invoice_row(invoice, today, "", language),
            "status": status,
            "status_label": status_label(status, language),
            "lines": [line(item) for item in sorted(invoice.lines, key=lambda x: x.sort)],
            "net": format_money(invoice.net, money, language),
            "vat": format_money(invoice.vat, money, language),
            "total": format_money(invoice.total, money, language),
            "paid_amount": format_money(invoice.total - invoice.outstanding, money, language),
            "outstanding": format_money(invoice.outstanding, money, language),
            "pdf_url": str(
                router[ROUTE_INVOICE_PDF].url_for(token=token, number=str(invoice.number))
            ),
            # A link to one invoice has no list to go back to.
            "back_url": "" if link.scope.invoice is not None else common["list_url"],
        }

    # -- the PDFs ---------------------------------------------------------------------------

    async def invoice_pdf(self, request: web.Request) -> web.StreamResponse:
        now = self._core.clock()
        link = await self._open(request, now)
        number = int(request.match_info["number"])
        if not 1 <= number <= MAX_KASHFLOW_ID:
            raise NotFound("no invoice")
        company, _, pdf = await self._core.invoice_document(
            link.credentials, link.customer_id, link.scope, number
        )
        await self._record_download(request, link, now, f"invoice {number}")
        name = document_filename(
            company.name, link.customer_code, Scope("invoice", number), date.fromtimestamp(now)
        )
        return await self._send_pdf(request, pdf, name)

    async def all_pdf(self, request: web.Request) -> web.StreamResponse:
        now = self._core.clock()
        link = await self._open(request, now)
        return await self._merged(request, link, link.scope, now)

    async def unpaid_pdf(self, request: web.Request) -> web.StreamResponse:
        now = self._core.clock()
        link = await self._open(request, now)
        if link.scope.kind != "all":
            # Only an "all" link offers this; anything else answers like a missing invoice.
            raise NotFound("no invoice")
        return await self._merged(request, link, Scope("unpaid"), now)

    async def _merged(
        self, request: web.Request, link: Link, scope: Scope, now: float
    ) -> web.StreamResponse:
        found, settings = await self._statement(link, scope)
        if not found.invoices:
            raise NotFound("no invoices")
        today = date.fromtimestamp(now)
        # Same order as the page (newest first), so the pack's order is the page's.
        pdf = await self._core.statement_pack(
            link.credentials,
            found,
            language=self._language(request, settings),
            business=settings.business,
            today=today,
        )
        what = "unpaid invoices" if scope.kind == "unpaid" else "invoices"
        await self._record_download(request, link, now, f"{what} ({len(found.invoices)})")
        name = document_filename(found.company.name, link.customer_code, scope, today)
        return await self._send_pdf(request, pdf, name)

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
        if request.method == "HEAD":
            await response.write_eof()
            return response
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
        """The link in the URL, or LinkNotValid / TooManyAttempts (see :mod:`web.opening`)."""
        return await self._opener.open(request, now)

    # -- what happened ----------------------------------------------------------------------

    async def _record_open(self, link: Link, found: Statement, now: float) -> None:
        customer = found.customer
        await self._safely(
            lambda: self._core.store.links.record_open(link.link_id, int(now)),
            lambda: self._core.store.activity.record(
                link.account,
                kind=LINK_OPENED,
                outcome="ok",
                subject=customer_label(customer.name, customer.code),
                detail=f"scope {link.scope}, {len(found.invoices)} invoices shown",
                at=now,
            ),
        )

    async def _record_download(
        self, request: web.Request, link: Link, now: float, what: str
    ) -> None:
        if request.method == "HEAD":
            return  # nothing was downloaded
        store = self._core.store

        async def write() -> None:
            # The token holds the customer's code only; the registry knows the name, so
            # the activity page writes this customer as it does everywhere else.
            record = await store.links.get(link.account, link.link_id)
            name = record.customer_name if record is not None else ""
            await store.activity.record(
                link.account,
                kind=PDF_DOWNLOADED,
                outcome="ok",
                subject=customer_label(name, link.customer_code),
                detail=what,
                at=now,
            )

        await self._safely(write)

    async def _safely(self, *writes: Callable[[], Awaitable[object]]) -> None:
        # The visitor came for their invoices: a failed bookkeeping write is logged, not
        # turned into an error page.
        for write in writes:
            try:
                await write()
            except (StoreError, ValueError) as exc:
                log.warning("could not record link activity: %s", type(exc).__name__)


RESOLVER = web.AppKey("resolver", Resolver)


__all__ = [
    "DOWNLOAD_COOKIE",
    "RESOLVER",
    "ROUTE_ALL_PDF",
    "ROUTE_INVOICE",
    "ROUTE_INVOICE_PDF",
    "ROUTE_LOGO",
    "ROUTE_PAGE",
    "ROUTE_UNPAID_PDF",
    "Resolver",
    "content_disposition",
]
