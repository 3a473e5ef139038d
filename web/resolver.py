"""The resolver: what a client sees when they open a permalink, and the PDFs it offers.

``GET /l/{token}`` opens the token, checks the registry for a revocation, asks KashFlow
for the company, the customer and the invoices in the link's scope (live, so invoices
raised after the link was made appear) and renders the page. The PDF routes check the
same things, then stream one invoice's PDF or every invoice in scope merged into one.

The resolver stores no credentials: each request opens the token, calls KashFlow and
forgets. Token failures from one address are counted (:mod:`web.opening`); past the
configured limit the address is answered 429 for a while, which makes guessing hopeless.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Final
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from kashflow.errors import NotFound
from permalink.activity import LINK_OPENED, PDF_DOWNLOADED
from permalink.core import Core
from permalink.db import StoreError
from permalink.limits import ThrottlePolicy
from permalink.links import Link
from permalink.presentation import (
    customer_label,
    document_filename,
    format_date,
    invoice_row,
    outstanding_amounts,
    scope_heading,
)
from permalink.scopes import MAX_KASHFLOW_ID, Scope, Statement
from web.errors import LinkNotValid
from web.opening import LinkOpener

log = logging.getLogger(__name__)

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
        try:
            found = await self._core.statement(link.credentials, link.customer_id, link.scope)
        except NotFound:
            # The customer (or the link's one invoice) is gone: the link no longer works.
            raise LinkNotValid from None
        await self._record_open(link, found, now)
        context = self._page_context(
            request, link, found, date.fromtimestamp(now), request.match_info["token"]
        )
        return aiohttp_jinja2.render_template(PAGE_TEMPLATE, request, context)

    async def preview(self, request: web.Request, link: Link, token: str) -> web.Response:
        """The page ``link``'s client sees, shown to the accountant ("view as the client"):
        the same page, marked as a preview, and not counted as an opening."""
        now = self._core.clock()
        found = await self._core.statement(link.credentials, link.customer_id, link.scope)
        context = self._page_context(request, link, found, date.fromtimestamp(now), token)
        context["preview_of"] = found.customer.name
        return aiohttp_jinja2.render_template(PAGE_TEMPLATE, request, context)

    def _page_context(
        self, request: web.Request, link: Link, found: Statement, today: date, token: str
    ) -> dict[str, object]:
        router = request.app.router
        # One route lookup for the page, not one per row: a long list has hundreds.
        page = str(router[ROUTE_PAGE].url_for(token=token))
        rows = [
            invoice_row(inv, today, page + _INVOICE_PDF.format(number=inv.number))
            for inv in found.invoices
        ]
        return {
            "company": found.company,
            "customer": found.customer,
            "heading": scope_heading(link.scope),
            "scope": link.scope.kind,
            "invoices": rows,
            "outstanding": outstanding_amounts(found.invoices),
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
        try:
            found = await self._core.statement(link.credentials, link.customer_id, scope)
        except NotFound:
            raise LinkNotValid from None  # as on the page: the customer is gone
        if not found.invoices:
            raise NotFound("no invoices")
        # Same order as the page (newest first), so page one of the file is the top row.
        numbers = found.numbers
        pdf = await self._core.merged_document(link.credentials, numbers)
        what = "unpaid invoices" if scope.kind == "unpaid" else "invoices"
        await self._record_download(request, link, now, f"{what} ({len(numbers)})")
        name = document_filename(
            found.company.name, link.customer_code, scope, date.fromtimestamp(now)
        )
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
    "ROUTE_INVOICE_PDF",
    "ROUTE_PAGE",
    "ROUTE_UNPAID_PDF",
    "Resolver",
    "content_disposition",
]
