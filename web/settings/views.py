"""The settings pages behind sign-in: customers and links, the mail bot, and activity.

Views are thin: read the form, call the core (KashFlow gateway, registry, account
settings, activity log), render. Everything is filed under the signed-in account
(:attr:`Session.account`), so one account never sees or touches another's links,
settings or activity. Every form is sent once and answered with a redirect to the page
that shows its result, with a one-time message (:mod:`web.settings.once`): reloading any
page repeats nothing. A link is shown (to copy, view as the client, or email) by its id:
its URL is written again from the registry and the session's password
(:meth:`permalink.core.Core.url_again`), so no token is ever kept or put in an address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Final

from aiohttp import web

from kashflow.errors import BadCredentials, KashFlowError, NotFound
from kashflow.models import CompanyDetails, Credentials, Customer, Invoice
from permalink.accounts import BotSettings, SettingError
from permalink.activity import (
    LINK_EMAILED,
    LINK_MINTED,
    LINK_RESTORED,
    LINK_REVOKED,
    TEST_EMAIL,
)
from permalink.addresses import shown, usable
from permalink.core import RelayNotReady
from permalink.i18n import languages_offered
from permalink.keyring import SecretUnreadable
from permalink.mail import Wording, compose_link_email, sender
from permalink.mailboxes import MailboxError
from permalink.presentation import InvoiceRow, customer_label, invoice_row, scope_text
from permalink.registry import LinkRecord
from permalink.reissue import survey
from permalink.relay import DeliveryFailure
from permalink.scopes import Scope
from permalink.spool import SpoolEntry
from permalink.submissions import Outcome
from permalink.trouble import words_for
from web.errors import ErrorPage, render
from web.settings import forms
from web.settings.auth import (
    ROUTE_LOGIN,
    ROUTE_LOGOUT,
    SessionRefused,
    SettingsState,
    login,
    login_form,
    logout,
    render_page,
    see_other,
    signed_in,
    state,
    url,
)
from web.settings.mailbox import check_mailbox, form_field, mailbox_form, save_mailbox
from web.settings.mailing import (
    MailView,
    compose_test_email,
    mail_view,
    reply_preview,
    wording_defaults,
)
from web.settings.once import Form, notice, problem, submitted, take
from web.settings.session import Session

log = logging.getLogger(__name__)

ROUTE_CUSTOMERS: Final = "settings.customers"
ROUTE_CUSTOMER: Final = "settings.customer"
ROUTE_MAKE_LINK: Final = "settings.make_link"
ROUTE_EMAIL_LINK: Final = "settings.email_link"
ROUTE_LINKS: Final = "settings.links"
ROUTE_REVOKE: Final = "settings.revoke"
ROUTE_RESTORE: Final = "settings.restore"
ROUTE_RESEND: Final = "settings.resend"
ROUTE_REVOKE_ALL: Final = "settings.revoke_all"
ROUTE_BOT: Final = "settings.bot"
ROUTE_TEST_EMAIL: Final = "settings.test_email"
ROUTE_PROVE_DOMAIN: Final = "settings.prove_domain"
ROUTE_REQUEUE: Final = "settings.requeue_mail"
ROUTE_REQUEUE_ALL: Final = "settings.requeue_all_mail"
ROUTE_ACTIVITY: Final = "settings.activity"

NO_SUCH_CUSTOMER: Final = ErrorPage(
    404, "Customer not found", "KashFlow has no customer with that code on your account."
)
NO_SUCH_LINK: Final = ErrorPage(
    404,
    "Link not found",
    "Your account has no link with that id. It may belong to another account.",
)
#: Spool states the bot page lists: messages the bot could not (yet) answer.
STUCK_STATES: Final = ("parked", "retry")
#: How long a revoked link can be brought back with "Undo" (seconds).
UNDO_S: Final = 600
#: A customer page lists this many of the customer's links, newest first.
CUSTOMER_LINKS: Final = 20
_MAX_QUERY: Final = 100


def _trouble(error: KashFlowError) -> str:
    if isinstance(error, BadCredentials):
        raise SessionRefused  # the password changed since sign-in: the guard ends the session
    return words_for(error, "accountant").text


def _kashflow_problem(location: str, error: KashFlowError) -> Outcome:
    """A KashFlow failure met while doing what a form asked, shown on ``location``."""
    return problem(location, _trouble(error), status=words_for(error, "accountant").status)


async def trouble_page(
    request: web.Request, session: Session, error: KashFlowError
) -> web.Response:
    if isinstance(error, BadCredentials):
        raise SessionRefused  # the password changed since sign-in: the guard ends the session
    log.warning("KashFlow %s on the settings pages", type(error).__name__)
    words = words_for(error, "accountant")
    return await render_page(
        request, "settings/trouble.html", session, {"message_text": words.text}, status=words.status
    )


def _to(
    request: web.Request, name: str, query: Mapping[str, str] | None = None, **parts: str
) -> str:
    """The path of a named route, with a query string when one is given."""
    built = request.app.router[name].url_for(**parts)
    return str(built.with_query(dict(query)) if query else built)


# -- home --------------------------------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    """``/settings/``: the customers page (or the sign-in page, via its guard)."""
    return see_other(url(request, ROUTE_CUSTOMERS))


# -- customers ---------------------------------------------------------------------------


def _matches(customer: Customer, query: str) -> bool:
    needle = query.casefold()
    return any(
        needle in field.casefold() for field in (customer.name, customer.code, customer.email)
    )


@signed_in
async def customers(request: web.Request, session: Session) -> web.StreamResponse:
    """The account's customers from KashFlow, filtered by ``?q=`` (name, code or email)."""
    st = state(request)
    query = request.query.get("q", "").strip()[:_MAX_QUERY]
    try:
        everyone = await st.account(session).customers()
    except KashFlowError as error:
        return await trouble_page(request, session, error)
    shown = [c for c in everyone if not query or _matches(c, query)]
    shown.sort(key=lambda c: (c.name.casefold(), c.code))
    return await render_page(
        request,
        "settings/customers.html",
        session,
        {"query": query, "customers": shown, "total": len(everyone)},
    )


# -- links as the pages show them ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A registered link as a page lists it; ``url`` only while it can be copied."""

    record: LinkRecord
    status: str
    shows: str
    url: str | None
    #: Revoked so recently that "Undo" still brings it back.
    undoable: bool

    @property
    def customer(self) -> str:
        return customer_label(self.record.customer_name, self.record.customer_code)


def _link_rows(
    st: SettingsState,
    session: Session,
    records: Sequence[LinkRecord],
    customer_ids: Mapping[str, int] | None = None,
) -> list[LinkRow]:
    assert session.credentials is not None
    now = st.now()
    rows = []
    for record in records:
        status: str = record.status(now)
        url_: str | None = None
        if status == "active":
            if st.core.made_with(record, session.credentials) is False:
                status = "broken"  # made with an earlier KashFlow password
            else:
                known = (customer_ids or {}).get(record.customer_code.upper())
                url_ = st.core.url_again(record, session.credentials, known)
        undoable = record.revoked_at is not None and record.revoked_at >= now - UNDO_S
        rows.append(LinkRow(record, status, scope_text(Scope.parse(record.scope)), url_, undoable))
    return rows


async def _customer_ids(
    st: SettingsState, session: Session, records: Sequence[LinkRecord]
) -> dict[str, int]:
    """Customer ids for live links registered before ids were kept (one KashFlow call)."""
    if all(r.customer_id is not None or r.revoked for r in records):
        return {}
    try:
        return {c.code.upper(): c.id for c in await st.account(session).customers()}
    except KashFlowError:
        return {}  # such links are simply not offered for copying this time


# -- one customer: their links, making and emailing one ------------------------------------


async def _customer_and_invoices(
    st: SettingsState, session: Session, code: str
) -> tuple[Customer, list[Invoice]]:
    account = st.account(session)
    customer = await account.customer_by_code(code)
    invoices = await account.invoices_for_customer(customer.id, lines=False)
    invoices.sort(key=lambda i: i.number, reverse=True)
    return customer, invoices


async def company_of(st: SettingsState, session: Session) -> CompanyDetails:
    """The business as mail shows it: live from KashFlow, else as it was at sign-in."""
    try:
        return await st.account(session).company_details()
    except KashFlowError:
        return CompanyDetails(name=session.company_name, email=session.company_email)


def link_email(
    *,
    customer: Customer,
    record: LinkRecord,
    url_: str,
    company: CompanyDetails,
    bot: BotSettings,
    language: str | None = None,
    from_address: str = "",
) -> EmailMessage:
    """The email that carries a link to its customer, from ``from_address`` (else the
    account's sender), in the client's ``language``, to every usable address on file
    (:func:`usable_addresses`)."""
    scope = Scope.parse(record.scope)
    recipients, _ = usable_addresses(customer)
    return compose_link_email(
        to=", ".join(recipients),
        from_addr=sender(company.name, from_address or bot.sender or company.email),
        company=company,
        customer=customer,
        link_url=url_,
        scope=scope,
        expires=None
        if record.expires is None
        else datetime.fromtimestamp(record.expires, UTC).date(),
        # The bot's introduction is written for replies ("the invoices you asked for");
        # an emailed link keeps the templates' own sentence.
        wording=Wording(greeting=bot.wording.greeting, sign_off=bot.wording.sign_off),
        language=language,
    )


@signed_in
async def customer(request: web.Request, session: Session) -> web.StreamResponse:
    """One customer: their links (opens, state, copy, view as the client), the link just
    made or asked for (``?link=``) with a preview of its email, and the "make a link" form
    with their invoices to pick from."""
    st = state(request)
    code = request.match_info["code"]
    try:
        found, invoices = await _customer_and_invoices(st, session, code)
    except NotFound:
        return render(request, NO_SUCH_CUSTOMER)
    except KashFlowError as error:
        return await trouble_page(request, session, error)
    records = await st.core.store.links.for_customer(
        session.account, found.code, limit=CUSTOMER_LINKS
    )
    rows = _link_rows(st, session, records, {found.code.upper(): found.id})
    shown = next((r for r in rows if r.record.link_id == request.query.get("link")), None)
    preview: MailView | None = None
    client = await st.core.client_settings(session.account, found.code)
    if shown is not None and shown.url and found.emails:
        bot = await st.core.store.accounts.get(session.account)
        company = await company_of(st, session)
        preview = mail_view(
            link_email(
                customer=found,
                record=shown.record,
                url_=shown.url,
                company=company,
                bot=bot,
                language=client.language(),
            )
        )
    today = date.fromtimestamp(st.now())
    return await render_page(
        request,
        "settings/customer.html",
        session,
        {
            "customer": found,
            "picker": [_picker_row(invoice, today) for invoice in invoices],
            "links": rows,
            "shown": shown,
            "preview": preview,
            "defaults": {"scope": "all", "invoice": "", "expires_days": ""},
            "client_language": client.customer_language,
            "languages": list(languages_offered()),
        },
    )


def _picker_row(invoice: Invoice, today: date) -> tuple[int, str]:
    """An invoice as the picker suggests it: number, date, total and status, as the
    client's page writes them."""
    row: InvoiceRow = invoice_row(invoice, today)
    return row.number, f"{row.issued_text} · {row.total} · {row.status_label}"


@signed_in
@submitted
async def make_link(request: web.Request, session: Session, form: Form) -> Outcome:
    """Mint a link for this customer with the chosen scope and expiry, and show it."""
    st = state(request)
    code = request.match_info["code"]
    page = _to(request, ROUTE_CUSTOMER, code=code)
    typed = forms.typed_values(form)
    try:
        wanted = forms.link_request(form)
    except forms.FormError as error:
        return problem(page, str(error), errors={error.field: str(error)}, values=typed)
    assert session.credentials is not None
    try:
        found, invoices = await _customer_and_invoices(st, session, code)
    except NotFound:
        return problem(_to(request, ROUTE_CUSTOMERS), NO_SUCH_CUSTOMER.message, status=404)
    except KashFlowError as error:
        return _kashflow_problem(page, error)
    theirs = {i.number for i in invoices}
    missing = [n for n in wanted.scope.numbers if n not in theirs]
    if missing:
        text = f"Invoice {missing[0]} is not one of this customer's invoices."
        return problem(page, text, errors={"invoice": text}, values=typed)
    now = int(st.now())
    minted = await st.core.mint(
        session.credentials,
        found,
        wanted.scope,
        minted_by="settings",
        expires_in=wanted.expires_in,
        now=now,
    )
    await st.core.store.activity.record(
        session.account,
        kind=LINK_MINTED,
        outcome="ok",
        subject=customer_label(found.name, found.code),
        detail=f"{scope_text(wanted.scope)}, link {minted.link.link_id}",
        at=now,
    )
    shown = _to(request, ROUTE_CUSTOMER, {"link": minted.link.link_id}, code=found.code)
    return notice(shown, "The link is made: copy it, view it as the client, or email it.")


def usable_addresses(customer: Customer) -> tuple[list[str], str]:
    """The addresses on file mail can go to, and a sentence naming each of the others
    (KashFlow's Email field is typed by hand: a line break or a space is one slip away)."""
    good, bad = usable(customer.emails)
    not_sent = " ".join(
        f"Not sent to “{shown(refused.text)}”, which is not a valid email address: {refused.reason}"
        for refused in bad
    )
    return [box.address for box in good], not_sent


#: Why mail from the settings pages is not sent: no From address the account may use.
NO_PROVED_SENDER: Final = (
    "Nothing was sent: mail from this account goes out only from an address at a domain it "
    "has proved. Save a request or reply-from address on the Mail bot page first."
)


async def _email_link(
    st: SettingsState, session: Session, record: LinkRecord, found: Customer
) -> tuple[int, str]:
    """Email a live link to the customer's own address on file: (status, what happened)."""
    assert session.credentials is not None
    url_ = st.core.url_again(record, session.credentials, found.id)
    if record.status(st.now()) != "active" or url_ is None:
        return 409, "This link no longer opens, so it was not sent. Make a new one."
    if not found.emails:
        return 409, (
            "KashFlow has no email address for this customer. Add one to the customer "
            "in KashFlow, or copy the link and send it yourself."
        )
    recipients, not_sent = usable_addresses(found)
    if not recipients:
        return 409, (
            f"{not_sent} Correct the customer's email address in KashFlow, or copy the "
            "link and send it yourself."
        )
    bot = await st.core.store.accounts.get(session.account)
    company = await company_of(st, session)
    from_address = await st.core.settings_sender(session.account, bot.sender, company.email)
    if not from_address:
        return 409, NO_PROVED_SENDER
    client = await st.core.client_settings(session.account, found.code)
    message = link_email(
        customer=found,
        record=record,
        url_=url_,
        company=company,
        bot=bot,
        language=client.language(),
        from_address=from_address,
    )
    failure = await _send(st, session, message, recipients, kind=LINK_EMAILED, about=found)
    if failure:
        return 502, failure
    sent = f"Emailed to {', '.join(recipients)}."
    # The others still got it; what to correct is said next to it.
    return 200, f"{sent} {not_sent} Correct it in KashFlow." if not_sent else sent


async def own_customer_link(
    st: SettingsState, session: Session, link_id: str, code: str | None = None
) -> tuple[LinkRecord, Customer] | None:
    """This account's link with this id (for this customer, when named) and its customer
    as KashFlow has it now."""
    record = await st.core.store.links.get(session.account, link_id)
    if record is None or (code is not None and record.customer_code != code):
        return None
    return record, await st.account(session).customer_by_code(record.customer_code)


@signed_in
@submitted
async def email_link(request: web.Request, session: Session, form: Form) -> Outcome:
    """Email a link of this customer's to their own address on file in KashFlow."""
    st = state(request)
    code = request.match_info["code"]
    link_id = forms.text(form, "link")
    page = _to(request, ROUTE_CUSTOMER, {"link": link_id}, code=code)
    try:
        found = await own_customer_link(st, session, link_id, code)
    except NotFound:
        return problem(_to(request, ROUTE_CUSTOMERS), NO_SUCH_CUSTOMER.message, status=404)
    except KashFlowError as error:
        return _kashflow_problem(page, error)
    if found is None:
        return problem(_to(request, ROUTE_CUSTOMER, code=code), NO_SUCH_LINK.message, status=404)
    status, text = await _email_link(st, session, *found)
    return notice(page, text) if status == 200 else problem(page, text, status=status)


async def _send(
    st: SettingsState,
    session: Session,
    message: EmailMessage,
    recipients: list[str],
    *,
    kind: str,
    about: Customer | None,
) -> str:
    """Hand ``message`` to the account's relay; returns "" on success or, for the page,
    what went wrong."""
    subject = customer_label(about.name, about.code) if about else ", ".join(recipients)
    activity = st.core.store.activity
    try:
        await st.core.send_for_account(session.account, message, recipients)
    except DeliveryFailure as error:
        # The relay's own words (its banner, its reply text) stay in the server's log:
        # anyone signed in can point the relay anywhere, so the page says only what failed.
        log.warning("settings mail (%s) not sent: %s", kind, error)
        reason = error.public_reason
    except RelayNotReady as error:
        reason = str(error) or type(error).__name__
    except SecretUnreadable:
        reason = "the saved relay password can no longer be read; save it again"
    else:
        await activity.record(
            session.account,
            kind=kind,
            outcome="ok",
            subject=subject,
            detail="sent to " + ", ".join(recipients),
        )
        return ""
    log.warning("mail for the settings pages not sent (%s)", kind)
    await activity.record(
        session.account, kind=kind, outcome="failed", subject=subject, detail=reason
    )
    return f"The email was not sent: {reason}"


# -- links -------------------------------------------------------------------------------


def _links_page(request: web.Request, form: Form | None = None) -> str:
    page = forms.text(form, "page") if form is not None else ""
    query = {"page": page} if page.isdigit() and page != "1" else None
    return _to(request, ROUTE_LINKS, query)


@signed_in
async def links(request: web.Request, session: Session) -> web.StreamResponse:
    """Every link this account minted, newest first: who and what it shows first, then
    its state, with copy, email again, revoke (and undo) and re-issue when it broke."""
    st = state(request)
    assert session.credentials is not None
    size = st.config.page_size
    page = request.query.get("page", "1")
    number = int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1
    registry = st.core.store.links
    records, total = await asyncio.gather(
        registry.list(session.account, limit=size, offset=(number - 1) * size),
        registry.count(session.account),
    )
    rows = _link_rows(st, session, records, await _customer_ids(st, session, records))
    changed = await survey(st.core, session.credentials, int(st.now()))
    return await render_page(
        request,
        "settings/links.html",
        session,
        {
            "links": rows,
            "total": total,
            "page": number,
            "pages": max(1, -(-total // size)),
            "broken": changed.broken,
            "undo_minutes": UNDO_S // 60,
        },
    )


@signed_in
@submitted
async def revoke(request: web.Request, session: Session, form: Form) -> Outcome:
    """Revoke one of this account's links; it stops opening at once (and can be brought
    back with Undo for a few minutes)."""
    st = state(request)
    link_id = request.match_info["link_id"]
    registry = st.core.store.links
    record = await registry.get(session.account, link_id)
    if record is None:
        return problem(_links_page(request, form), NO_SUCH_LINK.message, status=404)
    now = int(st.now())
    if await registry.revoke(session.account, link_id, now=now):
        await st.core.store.activity.record(
            session.account,
            kind=LINK_REVOKED,
            outcome="ok",
            subject=customer_label(record.customer_name, record.customer_code),
            detail=f"link {link_id}",
            at=now,
        )
    label = customer_label(record.customer_name, record.customer_code)
    return notice(
        _links_page(request, form),
        f"The link for {label} is revoked: it now shows “this link is not valid”.",
        undo=link_id,
    )


@signed_in
@submitted
async def restore(request: web.Request, session: Session, form: Form) -> Outcome:
    """Undo a revocation made in the last few minutes: the link opens again."""
    st = state(request)
    link_id = request.match_info["link_id"]
    registry = st.core.store.links
    record = await registry.get(session.account, link_id)
    if record is None:
        return problem(_links_page(request, form), NO_SUCH_LINK.message, status=404)
    now = int(st.now())
    label = customer_label(record.customer_name, record.customer_code)
    if not await registry.restore(session.account, link_id, revoked_since=now - UNDO_S):
        return problem(
            _links_page(request, form),
            f"The link for {label} can no longer be brought back. Make a new one instead.",
            status=409,
        )
    await st.core.store.activity.record(
        session.account,
        kind=LINK_RESTORED,
        outcome="ok",
        subject=label,
        detail=f"link {link_id}",
        at=now,
    )
    return notice(_links_page(request, form), f"The link for {label} works again.")


@signed_in
@submitted
async def resend(request: web.Request, session: Session, form: Form) -> Outcome:
    """Email a link again to its customer's address on file."""
    st = state(request)
    back = _links_page(request, form)
    try:
        found = await own_customer_link(st, session, request.match_info["link_id"])
    except NotFound:
        return problem(back, "KashFlow no longer has this link's customer.", status=404)
    except KashFlowError as error:
        return _kashflow_problem(back, error)
    if found is None:
        return problem(back, NO_SUCH_LINK.message, status=404)
    status, text = await _email_link(st, session, *found)
    return notice(back, text) if status == 200 else problem(back, text, status=status)


@signed_in
async def revoke_all_confirm(request: web.Request, session: Session) -> web.StreamResponse:
    """The confirmation step before revoking every link of the account."""
    st = state(request)
    total = await st.core.store.links.count(session.account)
    return await render_page(request, "settings/revoke_all.html", session, {"total": total})


@signed_in
@submitted
async def revoke_all(request: web.Request, session: Session, form: Form) -> Outcome:
    """Revoke every link the account issued before now, listed here or not."""
    st = state(request)
    if forms.text(form, "confirm") != "revoke-all":
        text = "Tick the box to confirm that every link should stop."
        return problem(_to(request, "settings.revoke_all_confirm"), text, errors={"confirm": text})
    now = int(st.now())
    count = await st.core.store.links.revoke_all(session.account, now)
    await st.core.store.activity.record(
        session.account,
        kind=LINK_REVOKED,
        outcome="ok",
        subject="all links",
        detail=f"{count} listed link{'s' if count != 1 else ''} revoked, and any older ones",
        at=now,
    )
    return notice(
        _to(request, ROUTE_LINKS), "Every link of this account made before now is revoked."
    )


# -- the mail bot ------------------------------------------------------------------------


async def _stuck_mail(st: SettingsState, settings: BotSettings) -> list[SpoolEntry]:
    """Parked and retrying messages of this account (filed under it when accepted)."""
    return await st.core.store.spool.list(STUCK_STATES, limit=50, account=settings.account)


def _wording(values: Mapping[str, str], saved: Wording) -> Wording:
    if not values:
        return saved
    typed = forms.wording_fields(values)
    return Wording(typed["greeting"], typed["intro"], typed["sign_off"])


@signed_in
async def bot(request: web.Request, session: Session) -> web.StreamResponse:
    """The bot's settings, the stuck mail, the reply preview and the relay test."""
    st = state(request)
    message = await take(request, session)
    settings = await st.core.store.accounts.get(session.account)
    values = message.values or None
    wording = _wording(values or {}, settings.wording)
    company = CompanyDetails(name=session.company_name, email=session.company_email)
    preview = mail_view(
        reply_preview(
            wording,
            company=company,
            from_addr=sender(company.name, settings.sender or company.email),
            public_base_url=st.public_base_url,
            today=date.fromtimestamp(st.now()),
        )
    )
    return await render_page(
        request,
        "settings/bot.html",
        session,
        {
            "bot": settings,
            "values": values,
            "attachment_mb": max(1, round(settings.max_attachment_bytes / (1024 * 1024))),
            "preview": preview,
            "wording": wording,
            "defaults": wording_defaults(session.company_name),
            "stuck": await _stuck_mail(st, settings),
            "domains": await st.core.store.domains.list(session.account),
            "mailbox": await st.core.store.mailboxes.get(session.account),
            # Whether a stored secret still opens is checked, not assumed from its presence:
            # after a server key is retired the page must not say "saved" for a dead one.
            "unreadable": await st.core.store.secrets.unreadable(settings.account),
            "can_email": True,
        },
        message=message,
    )


@signed_in
@submitted
async def save_bot(request: web.Request, session: Session, form: Form) -> Outcome:
    """Save the bot page (or, with the Preview button, only show the reply preview)."""
    st = state(request)
    accounts = st.core.store.accounts
    current = await accounts.get(session.account)
    page = _to(request, ROUTE_BOT)
    typed = forms.typed_values(form)
    if forms.text(form, "action") == "preview":
        return Outcome(
            page + "#bot-wording",
            200,
            {
                "text": "The preview shows your words. Nothing is saved until you save.",
                "kind": "notice",
                "values": typed,
            },
        )
    try:
        submitted_ = forms.bot_form(form, current)
        unproved = await _unproved(st, session, current, submitted_)
        if unproved:
            field = next(iter(unproved))
            return problem(page, unproved[field], errors=unproved, values=typed)
        # Everything is checked before anything is saved: a refusal leaves the page's
        # settings, the secrets and the mailbox exactly as they were.
        mailbox = mailbox_form(form)
        await accounts.check(
            session.account,
            gaining_credentials=bool(submitted_.bot_password or submitted_.use_my_credentials),
            **submitted_.changes,
        )
        if mailbox is not None:
            await check_mailbox(st.core.store.mailboxes, session.account, mailbox)
        await _save_secrets(st, session, submitted_)
        await accounts.update(session.account, **submitted_.changes)
        if mailbox is not None:
            await save_mailbox(st.core.store.mailboxes, session.account, mailbox)
    except forms.FormError as error:
        return problem(page, str(error), errors={error.field: str(error)}, values=typed)
    except SettingError as error:
        field = "use_my_credentials" if error.field == "bot_credentials" else error.field
        return problem(page, str(error), errors={field: str(error)}, values=typed)
    except MailboxError as error:
        text = str(error)
        return problem(page, text, errors={form_field(error): text}, values=typed)
    except ValueError as error:
        return problem(page, str(error), values=typed)
    except KashFlowError as error:
        text = _bot_login_trouble(error)
        return problem(page, text, errors={"bot_password": text}, values=typed)
    return notice(page, "The bot settings are saved.")


async def _unproved(
    st: SettingsState, session: Session, current: BotSettings, submitted_: forms.BotForm
) -> dict[str, str]:
    """Why a new request or reply-from address cannot be saved yet, by field (none if it
    can).

    An address at a domain the account has not proved it controls would route (or speak
    for) another firm's mail; the page shows the DNS record that proves it.
    """
    changed = {
        name: str(submitted_.changes.get(name, "")).strip()
        for name, now in (
            ("request_address", current.request_address),
            ("reply_from", current.reply_from),
        )
        if str(submitted_.changes.get(name, "")).strip().lower() != now.lower()
    }
    for name, address in changed.items():
        if not address:
            continue
        missing = await st.core.unproved_domains(session.account, address)
        if missing:
            proof = await st.core.store.domains.challenge(session.account, missing[0])
            return {
                name: f"Nothing was saved: first prove that this account controls "
                f"{proof.domain}. Publish a DNS TXT record named {proof.record_name} with "
                f"the text {proof.record_value}, then press “Check the domain” below."
            }
    return {}


@signed_in
@submitted
async def prove_domain(request: web.Request, session: Session, form: Form) -> Outcome:
    """Look for the account's proof record in DNS for the typed domain."""
    st = state(request)
    page = _to(request, ROUTE_BOT) + "#domains-title"
    domain = forms.text(form, "domain").strip()
    try:
        found = await st.core.prove_domain(session.account, domain)
    except ValueError as error:
        return problem(
            page,
            str(error),
            errors={"domain": str(error)},
            values={"domain": domain},
            where="domains",
        )
    if not found.proved:
        text = f"Not proved yet: {found.problem}."
        return problem(
            page, text, errors={"domain": text}, values={"domain": domain}, where="domains"
        )
    return notice(page, "The domain is proved: addresses at it can now be saved.", where="domains")


def _bot_login_trouble(error: KashFlowError) -> str:
    if isinstance(error, BadCredentials):
        return (
            "KashFlow did not accept the bot's password for this account; nothing was saved. "
            "Use the account's API password."
        )
    return _trouble(error) + " Nothing was saved."


async def _save_secrets(st: SettingsState, session: Session, submitted_: forms.BotForm) -> None:
    """Store what the form says about the bot's password and the relay's, sealed.

    Done before the plain settings, because turning the bot on needs its credentials.
    A typed bot password is checked with KashFlow first, so a typo never gets stored.
    """
    assert session.credentials is not None
    accounts = st.core.store.accounts
    if submitted_.bot_password:
        candidate: Credentials | None = Credentials(
            session.credentials.username, submitted_.bot_password
        )
    elif submitted_.use_my_credentials:
        candidate = session.credentials
    else:
        candidate = None
    if candidate is not None:
        # Checked live before it is stored: a typo, or a password changed in KashFlow
        # since this session began, must never become the bot's.
        try:
            await st.core.kashflow(candidate).company_details()
        except BadCredentials:
            if candidate is session.credentials:
                raise SessionRefused from None  # stale: the session itself is over
            raise
        await accounts.set_bot_credentials(session.account, candidate)
    if submitted_.relay_password:
        await accounts.set_relay_password(session.account, submitted_.relay_password)
    elif submitted_.forget_relay_password:
        await accounts.set_relay_password(session.account, None)


def _valid_address(text: str) -> bool:
    name, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    return bool(
        at and local and "." in domain and address == text and not name and len(text) <= 254
    )


@signed_in
@submitted
async def test_email(request: web.Request, session: Session, form: Form) -> Outcome:
    """Send a test message through the relay, to the company's email or a typed address."""
    st = state(request)
    typed = forms.text(form, "to").strip()
    to = typed or session.company_email
    settings = await st.core.store.accounts.get(session.account)
    page = _to(request, ROUTE_BOT)
    failure = from_address = ""
    if not settings.relay.host:
        failure = "Save the outgoing mail relay first, then send the test."
    elif not to:
        failure = "Type the address the test should go to."
    elif not _valid_address(to):
        failure = f"{to!r} is not an email address."
    elif not (
        from_address := await st.core.settings_sender(
            session.account, settings.sender, session.company_email
        )
    ):
        failure = NO_PROVED_SENDER
    elif not await st.core.store.limits.try_acquire(
        f"{session.account}:test-email",
        limit=st.config.test_emails_per_hour,
        window_s=3600.0,
        now=st.now(),
    ):
        failure = (
            f"At most {st.config.test_emails_per_hour} test emails an hour can be sent; "
            "please try again later."
        )
    if not failure:
        message = compose_test_email(
            to=to,
            from_addr=sender(session.company_name, from_address),
            company_name=session.company_name,
            relay=f"{settings.relay.host}:{settings.relay.port}",
        )
        failure = await _send(st, session, message, [to], kind=TEST_EMAIL, about=None)
    if failure:
        return problem(
            page + "#test-title",
            failure,
            errors={"to": failure},
            values={"to": typed},
            where="test",
        )
    return notice(
        page + "#test-title",
        "The test email was handed to the relay. Check the inbox it was sent to.",
        where="test",
    )


#: What "Try again" answers when the request is no longer parked (another tab, or the shell,
#: took it first): nothing is done twice.
NOT_PARKED: Final = (
    "That request is no longer parked (queued again already, or answered): nothing was done."
)


@signed_in
@submitted
async def requeue_mail(request: web.Request, session: Session, form: Form) -> Outcome:
    """ "Try again" on a parked request: it is queued once, however often this is sent."""
    st = state(request)
    page = _to(request, ROUTE_BOT) + "#stuck-title"
    raw = request.match_info["spool_id"]
    spool_id = int(raw) if raw.isdigit() and len(raw) < 19 else None
    if spool_id is not None and await st.core.store.spool.requeue(
        spool_id, account=session.account, reason="queued again from the settings page"
    ):
        return notice(page, "The request is queued again: the bot answers it in a moment.")
    return notice(page, NOT_PARKED)


@signed_in
@submitted
async def requeue_all_mail(request: web.Request, session: Session, form: Form) -> Outcome:
    """ "Try them all again": every parked request of the account, each queued once."""
    st = state(request)
    page = _to(request, ROUTE_BOT) + "#stuck-title"
    requeued = await st.core.store.spool.requeue_parked(account=session.account)
    if not requeued:
        return notice(page, NOT_PARKED)
    count = len(requeued)
    return notice(
        page,
        f"{count} parked request{'s are' if count != 1 else ' is'} queued again: the bot "
        "answers them in turn.",
    )


# -- activity ----------------------------------------------------------------------------


@signed_in
async def activity(request: web.Request, session: Session) -> web.StreamResponse:
    """Recent events of the account, newest first, one page at a time (keyset: ``before``)."""
    st = state(request)
    size = st.config.page_size
    before = request.query.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    events = await st.core.store.activity.page(session.account, before_id=before_id, limit=size + 1)
    older = events[size - 1].id if len(events) > size else None
    return await render_page(
        request,
        "settings/activity.html",
        session,
        {"events": events[:size], "older": older, "first_page": before_id is None},
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """Every settings route, named ``settings.*``."""
    router.add_get("/settings/login", login_form, name=ROUTE_LOGIN)
    router.add_post("/settings/login", login, name="settings.login_post")
    router.add_post("/settings/logout", logout, name=ROUTE_LOGOUT)
    router.add_get("/settings", home, name="settings.root")
    router.add_get("/settings/", home, name="settings.home")
    router.add_get("/settings/customers", customers, name=ROUTE_CUSTOMERS)
    router.add_get("/settings/customers/{code}", customer, name=ROUTE_CUSTOMER)
    router.add_post("/settings/customers/{code}/links", make_link, name=ROUTE_MAKE_LINK)
    router.add_post("/settings/customers/{code}/email", email_link, name=ROUTE_EMAIL_LINK)
    router.add_get("/settings/links", links, name=ROUTE_LINKS)
    router.add_post("/settings/links/{link_id}/revoke", revoke, name=ROUTE_REVOKE)
    router.add_post("/settings/links/{link_id}/restore", restore, name=ROUTE_RESTORE)
    router.add_post("/settings/links/{link_id}/email", resend, name=ROUTE_RESEND)
    router.add_get("/settings/revoke-all", revoke_all_confirm, name="settings.revoke_all_confirm")
    router.add_post("/settings/revoke-all", revoke_all, name=ROUTE_REVOKE_ALL)
    router.add_get("/settings/bot", bot, name=ROUTE_BOT)
    router.add_post("/settings/bot", save_bot, name="settings.save_bot")
    router.add_post("/settings/bot/test-email", test_email, name=ROUTE_TEST_EMAIL)
    router.add_post("/settings/bot/domain", prove_domain, name=ROUTE_PROVE_DOMAIN)
    router.add_post("/settings/bot/mail/{spool_id}/requeue", requeue_mail, name=ROUTE_REQUEUE)
    router.add_post("/settings/bot/mail/requeue", requeue_all_mail, name=ROUTE_REQUEUE_ALL)
    router.add_get("/settings/activity", activity, name=ROUTE_ACTIVITY)


__all__ = [
    "NO_SUCH_LINK",
    "LinkRow",
    "add_routes",
    "company_of",
    "link_email",
    "own_customer_link",
    "trouble_page",
]
