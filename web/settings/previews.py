"""What the client will see, shown to the accountant first: their page, and each email.

* "View as the client" shows a link's page exactly as its client sees it (the resolver's
  own page, marked as a preview and not counted as an opening).
* Each email the settings pages send or the bot writes is previewed as the real message:
  the pages show its headers, its attachments and its text part, and frame its HTML part,
  served here as a :class:`~web.security.MailPreview` (inline styles allowed, nothing
  else, sandboxed), so it looks as it will in the client's mail program.
"""

from __future__ import annotations

from datetime import date

from aiohttp import web

from kashflow.errors import KashFlowError, NotFound
from kashflow.models import CompanyDetails
from permalink.links import InvalidLink
from permalink.mail import Wording, sender
from web.errors import ErrorPage, render
from web.resolver import RESOLVER
from web.security import MailPreview
from web.settings import forms
from web.settings.auth import signed_in, state
from web.settings.mailing import mail_view, reply_preview
from web.settings.session import Session
from web.settings.views import NO_SUCH_LINK, company_of, link_email, own_customer_link

ROUTE_VIEW_AS_CLIENT = "settings.view_as_client"
ROUTE_LINK_EMAIL_PREVIEW = "settings.link_email_preview"
ROUTE_REPLY_PREVIEW = "settings.reply_preview"

CANNOT_PREVIEW = ErrorPage(
    409,
    "This link cannot be shown",
    "It no longer opens (revoked, expired, or made with an earlier KashFlow password), so "
    "there is nothing to preview. Make a new link from the customer's page.",
)


def _part(view_html: str, view_text: str, request: web.Request) -> web.Response:
    if request.query.get("part") == "text":
        return web.Response(text=view_text, content_type="text/plain")
    return MailPreview(view_html)


@signed_in
async def view_as_client(request: web.Request, session: Session) -> web.StreamResponse:
    """A link's page as its client sees it."""
    st = state(request)
    assert session.credentials is not None
    record = await st.core.store.links.get(session.account, request.match_info["link_id"])
    if record is None:
        return render(request, NO_SUCH_LINK)
    customer_id = record.customer_id
    if customer_id is None:
        try:
            customer_id = (await st.account(session).customer_by_code(record.customer_code)).id
        except KashFlowError:
            return render(request, CANNOT_PREVIEW)
    url = st.core.url_again(record, session.credentials, customer_id)
    if url is None or record.status(st.now()) != "active":
        return render(request, CANNOT_PREVIEW)
    token = url.rsplit("/", 1)[1]
    try:
        link = await st.core.open_link(token)
        return await request.app[RESOLVER].preview(request, link, token)
    except (InvalidLink, NotFound):
        return render(request, CANNOT_PREVIEW)


@signed_in
async def link_email_preview(request: web.Request, session: Session) -> web.StreamResponse:
    """The email that would carry a link to its customer (HTML part, or ``?part=text``)."""
    st = state(request)
    assert session.credentials is not None
    try:
        found = await own_customer_link(st, session, request.match_info["link_id"])
    except KashFlowError:
        found = None
    if found is None:
        return render(request, NO_SUCH_LINK)
    record, customer = found
    url = st.core.url_again(record, session.credentials, customer.id)
    if url is None:
        return render(request, CANNOT_PREVIEW)
    bot = await st.core.store.accounts.get(session.account)
    message = link_email(
        customer=customer,
        record=record,
        url_=url,
        company=await company_of(st, session),
        bot=bot,
    )
    view = mail_view(message)
    return _part(view.html, view.text, request)


@signed_in
async def reply_preview_part(request: web.Request, session: Session) -> web.StreamResponse:
    """The bot's reply to a sample request in the wording of the query string (as typed,
    not yet saved): HTML part, or ``?part=text``."""
    st = state(request)
    typed = forms.wording_fields(request.query)
    settings = await st.core.store.accounts.get(session.account)
    company = CompanyDetails(name=session.company_name, email=session.company_email)
    message = reply_preview(
        Wording(typed["greeting"], typed["intro"], typed["sign_off"]),
        company=company,
        from_addr=sender(company.name, settings.sender or company.email),
        public_base_url=st.public_base_url,
        today=date.fromtimestamp(st.now()),
    )
    view = mail_view(message)
    return _part(view.html, view.text, request)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/settings/links/{link_id}/view", view_as_client, name=ROUTE_VIEW_AS_CLIENT)
    router.add_get(
        "/settings/links/{link_id}/email-preview",
        link_email_preview,
        name=ROUTE_LINK_EMAIL_PREVIEW,
    )
    router.add_get("/settings/bot/preview", reply_preview_part, name=ROUTE_REPLY_PREVIEW)


__all__ = ["add_routes"]
