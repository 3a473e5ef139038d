"""A link's feeds: its due dates as a calendar, and its invoices as JSON.

``GET /l/{token}/due.ics`` is an iCalendar feed of the link's invoices still owed (see
:mod:`permalink.duedates`), for a calendar to subscribe to (``webcal://``) or import once.
``GET /l/{token}.json`` is what the page shows as one versioned object (see
:mod:`permalink.jsonview` and ``docs/FEEDS.md``), for an integration.

Both are URLs of the link, and behave like the page in every way that protects it: the
token is opened by the same :class:`~web.opening.LinkOpener` (sealing, expiry,
revocation, the throttle on failures), a token that does not open gets the page's own
"not valid" answer, and every response carries the capability-URL headers and is logged
without its token (:mod:`web.security`). Neither feed counts as opening the link: a
subscribed calendar fetches it every few hours, which would drown the real visits.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from typing import Final

from aiohttp import web

from kashflow.errors import NotFound
from permalink import duedates, jsonview
from permalink.core import Core
from permalink.i18n import negotiate
from permalink.limits import ThrottlePolicy
from permalink.links import Link
from permalink.scopes import Statement
from web.errors import LinkNotValid
from web.opening import LinkOpener
from web.resolver import ROUTE_ALL_PDF, ROUTE_INVOICE_PDF, ROUTE_PAGE

ROUTE_CALENDAR: Final = "link.calendar"
ROUTE_JSON: Final = "link.json"
#: The name a downloaded calendar is saved under (the same for every link: it says
#: nothing about whose invoices these are).
CALENDAR_FILENAME: Final = "due-dates.ics"


class Feeds:
    """The calendar and JSON views of a link; :meth:`add_routes` names the routes."""

    def __init__(self, core: Core, *, invalid_link_policy: ThrottlePolicy) -> None:
        self._core = core
        self._base_url = core.config.public_base_url
        self._opener = LinkOpener(core, invalid_link_policy)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register before the resolver's routes: its page route would take
        ``/l/<token>.json`` for a token ending in ``.json``. Tokens never hold a dot."""
        router.add_get("/l/{token:[^/.]+}.json", self.json_view, name=ROUTE_JSON)
        router.add_get("/l/{token:[^/]+}/due.ics", self.calendar, name=ROUTE_CALENDAR)

    async def calendar(self, request: web.Request) -> web.StreamResponse:
        now = self._core.clock()
        link = await self._opener.open(request, now)
        found, settings = await asyncio.gather(
            self._statement(link),
            self._core.client_settings(link.account, link.customer_code),
        )
        # The page's language: the accountant's choice for the client, then the browser's
        # (a calendar app fetching a subscription rarely says), then the account's default.
        language = settings.language(browser=negotiate(request.headers.get("Accept-Language")))
        body = duedates.due_calendar(
            found,
            account=link.account,
            link_url=self._url(request, ROUTE_PAGE),
            public_base_url=self._base_url,
            now=datetime.fromtimestamp(now, UTC),
            language=language,
        )
        return web.Response(
            body=body,
            content_type=duedates.MEDIA_TYPE,
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{CALENDAR_FILENAME}"'},
        )

    async def json_view(self, request: web.Request) -> web.StreamResponse:
        now = self._core.clock()
        link = await self._opener.open(request, now)
        found = await self._statement(link)
        token = request.match_info["token"]
        invoice_pdf = request.app.router[ROUTE_INVOICE_PDF]
        document = jsonview.link_document(
            found,
            link_url=self._url(request, ROUTE_PAGE),
            all_pdf_url=self._url(request, ROUTE_ALL_PDF),
            pdf_url=lambda number: (
                self._base_url + str(invoice_pdf.url_for(token=token, number=str(number)))
            ),
            today=date.fromtimestamp(now),
        )
        return web.Response(
            text=json.dumps(document, ensure_ascii=False, separators=(",", ":")),
            content_type=jsonview.MEDIA_TYPE,
            charset="utf-8",
        )

    async def _statement(self, link: Link) -> Statement:
        try:
            return await self._core.statement(link.credentials, link.customer_id, link.scope)
        except NotFound:
            # As on the page: the customer (or the link's one invoice) is gone.
            raise LinkNotValid from None

    def _url(self, request: web.Request, route: str) -> str:
        """An absolute URL of this link, on the configured base (never the Host header)."""
        token = request.match_info["token"]
        return self._base_url + str(request.app.router[route].url_for(token=token))


__all__ = ["CALENDAR_FILENAME", "ROUTE_CALENDAR", "ROUTE_JSON", "Feeds"]
