"""The settings pages behind sign-in: customers and links, the mail bot, and activity.

Views are thin: read the form, call the core (KashFlow gateway, registry, account
settings, activity log), render. Everything is filed under the signed-in account
(:attr:`Session.account`), so one account never sees or touches another's links,
settings or activity. A POST that changes something answers with a redirect (303), so
reloading the page never repeats it; results travel as a short ``done`` code in the URL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, Final

from aiohttp import web

from kashflow.errors import BadCredentials, KashFlowError, NotFound
from kashflow.models import CompanyDetails, Credentials, Customer, Invoice
from permalink.accounts import BotSettings
from permalink.activity import LINK_EMAILED, LINK_MINTED, LINK_REVOKED, TEST_EMAIL
from permalink.core import RelayNotReady
from permalink.keyring import SecretUnreadable
from permalink.links import InvalidLink, Link
from permalink.mail import Wording, compose_link_email
from permalink.presentation import scope_text
from permalink.relay import DeliveryFailure
from permalink.scopes import Scope
from permalink.spool import SpoolEntry
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
from web.settings.mailbox import mailbox_form, save_mailbox
from web.settings.mailing import compose_test_email, preview_reply
from web.settings.session import Session

log = logging.getLogger(__name__)

ROUTE_CUSTOMERS: Final = "settings.customers"
ROUTE_CUSTOMER: Final = "settings.customer"
ROUTE_MAKE_LINK: Final = "settings.make_link"
ROUTE_EMAIL_LINK: Final = "settings.email_link"
ROUTE_LINKS: Final = "settings.links"
ROUTE_REVOKE: Final = "settings.revoke"
ROUTE_REVOKE_ALL: Final = "settings.revoke_all"
ROUTE_BOT: Final = "settings.bot"
ROUTE_TEST_EMAIL: Final = "settings.test_email"
ROUTE_PROVE_DOMAIN: Final = "settings.prove_domain"
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
_MAX_QUERY: Final = 100

DONE: Final[Mapping[str, str]] = {
    "revoked": "The link is revoked: it now shows “this link is not valid”.",
    "revoked_all": "Every link of this account made before now is revoked.",
    "saved": "The bot settings are saved.",
    "test_sent": "The test email was handed to the relay. Check the inbox it was sent to.",
    "domain_proved": "The domain is proved: addresses at it can now be saved.",
}


def _trouble(error: KashFlowError) -> str:
    return words_for(error, "accountant").text


def _trouble_page(request: web.Request, session: Session, error: KashFlowError) -> web.Response:
    if isinstance(error, BadCredentials):
        raise SessionRefused  # the password changed since sign-in: the guard ends the session
    log.warning("KashFlow %s on the settings pages", type(error).__name__)
    words = words_for(error, "accountant")
    return render_page(
        request, "settings/trouble.html", session, {"message": words.text}, status=words.status
    )


def _done(request: web.Request) -> str:
    return DONE.get(request.query.get("done", ""), "")


# -- home --------------------------------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    """``/settings/``: the customers page (or the sign-in page, via its guard)."""
    return see_other(url(request, ROUTE_CUSTOMERS))


# -- customers and making links ----------------------------------------------------------


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
        return _trouble_page(request, session, error)
    shown = [c for c in everyone if not query or _matches(c, query)]
    shown.sort(key=lambda c: (c.name.casefold(), c.code))
    return render_page(
        request,
        "settings/customers.html",
        session,
        {"query": query, "customers": shown, "total": len(everyone)},
    )


@dataclass(frozen=True, slots=True)
class MintedLink:
    """A link just made (or just emailed), as the customer page shows it."""

    url: str
    link_id: str
    scope: str
    expires: int | None
    emailed_to: str = ""


async def _customer_and_invoices(
    st: SettingsState, session: Session, code: str
) -> tuple[Customer, list[Invoice]]:
    account = st.account(session)
    customer = await account.customer_by_code(code)
    invoices = await account.invoices_for_customer(customer.id)
    invoices.sort(key=lambda i: i.number, reverse=True)
    return customer, invoices


async def _customer_page(
    request: web.Request,
    session: Session,
    *,
    form: Mapping[str, object] | None = None,
    error: str = "",
    minted: MintedLink | None = None,
    status: int = 200,
) -> web.StreamResponse:
    st = state(request)
    code = request.match_info["code"]
    try:
        customer, invoices = await _customer_and_invoices(st, session, code)
    except NotFound:
        return render(request, NO_SUCH_CUSTOMER)
    except KashFlowError as error_:
        return _trouble_page(request, session, error_)
    values = {
        "scope": forms.text(form, "scope") if form else "all",
        "invoice": forms.text(form, "invoice") if form else "",
        "expires_days": forms.text(form, "expires_days") if form else "",
    }
    return render_page(
        request,
        "settings/customer.html",
        session,
        {
            "customer": customer,
            "invoices": invoices,
            "today": datetime.now(UTC).date(),
            "values": values,
            "error": error,
            "minted": minted,
            "can_email": True,
        },
        status=status,
    )


@signed_in
async def customer(request: web.Request, session: Session) -> web.StreamResponse:
    """One customer: the "make a link" form with their invoices to pick from."""
    return await _customer_page(request, session)


@signed_in
async def make_link(request: web.Request, session: Session) -> web.StreamResponse:
    """Mint a link for this customer with the chosen scope and expiry, and show it."""
    st = state(request)
    form = await request.post()
    code = request.match_info["code"]
    try:
        wanted = forms.link_request(form)
    except forms.FormError as error:
        return await _customer_page(request, session, form=form, error=str(error), status=400)
    assert session.credentials is not None
    try:
        customer, invoices = await _customer_and_invoices(st, session, code)
    except NotFound:
        return render(request, NO_SUCH_CUSTOMER)
    except KashFlowError as error:
        return _trouble_page(request, session, error)
    theirs = {i.number for i in invoices}
    missing = [n for n in wanted.scope.numbers if n not in theirs]
    if missing:
        return await _customer_page(
            request,
            session,
            form=form,
            error=f"Invoice {missing[0]} is not one of this customer's invoices.",
            status=400,
        )
    now = int(st.now())
    minted = await st.core.mint(
        session.credentials,
        customer,
        wanted.scope,
        minted_by="settings",
        expires_in=wanted.expires_in,
        now=now,
    )
    await st.core.store.activity.record(
        session.account,
        kind=LINK_MINTED,
        outcome="ok",
        subject=f"{customer.name} ({customer.code})",
        detail=f"{scope_text(wanted.scope)}, link {minted.link.link_id}",
        at=now,
    )
    shown = MintedLink(minted.url, minted.link.link_id, str(wanted.scope), minted.link.expires)
    return await _customer_page(request, session, minted=shown)


async def _own_link(st: SettingsState, session: Session, link_url: str, code: str) -> Link | None:
    """The live link behind a URL this account minted for this customer, else None."""
    prefix = st.public_base_url + "/l/"
    token = link_url[len(prefix) :] if link_url.startswith(prefix) else ""
    if not token:
        return None
    try:
        link = await st.core.open_link(token)
    except InvalidLink:
        return None
    if link.credentials.username.strip().lower() != session.account:
        return None
    return link if link.customer_code == code else None


@signed_in
async def email_link(request: web.Request, session: Session) -> web.StreamResponse:
    """Email a freshly made link to the customer's own address on file in KashFlow."""
    st = state(request)
    form = await request.post()
    code = request.match_info["code"]
    link_url = forms.text(form, "link")
    link = await _own_link(st, session, link_url, code)
    if link is None:
        return render(request, NO_SUCH_LINK)
    try:
        customer_ = await st.account(session).customer_by_code(code)
    except NotFound:
        return render(request, NO_SUCH_CUSTOMER)
    except KashFlowError as error:
        return _trouble_page(request, session, error)
    recipients = list(customer_.emails)
    problem = ""
    if not recipients:
        problem = (
            "KashFlow has no email address for this customer. Add one to the customer "
            "in KashFlow, or copy the link and send it yourself."
        )
    bot = await st.core.store.accounts.get(session.account)
    sender = bot.sender or session.company_email
    if not problem and not sender:
        problem = "Set a reply-from or request address on the bot page first."
    if not problem:
        message = compose_link_email(
            to=", ".join(recipients),
            from_addr=sender,
            company=CompanyDetails(name=session.company_name, email=session.company_email),
            customer=customer_,
            link_url=link_url,
            scope=link.scope,
            expires=None
            if link.expires is None
            else datetime.fromtimestamp(link.expires, UTC).date(),
            # The bot's introduction is written for replies ("the invoices you asked
            # for"); an emailed link keeps the templates' own sentence.
            wording=Wording(greeting=bot.wording.greeting, sign_off=bot.wording.sign_off),
        )
        problem = await _send(st, session, message, recipients, kind=LINK_EMAILED, about=customer_)
    minted = MintedLink(
        link_url,
        link.link_id,
        str(link.scope),
        link.expires,
        emailed_to="" if problem else ", ".join(recipients),
    )
    return await _customer_page(
        request, session, minted=minted, error=problem, status=502 if problem else 200
    )


async def _send(
    st: SettingsState,
    session: Session,
    message: Any,
    recipients: list[str],
    *,
    kind: str,
    about: Customer | None,
) -> str:
    """Hand ``message`` to the account's relay; returns "" on success or, for the page,
    what went wrong."""
    subject = f"{about.name} ({about.code})" if about is not None else ", ".join(recipients)
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


@signed_in
async def links(request: web.Request, session: Session) -> web.StreamResponse:
    """Every link this account minted, newest first, with revoke buttons."""
    st = state(request)
    size = st.config.page_size
    page = request.query.get("page", "1")
    number = int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1
    registry = st.core.store.links
    rows, total = await asyncio.gather(
        registry.list(session.account, limit=size, offset=(number - 1) * size),
        registry.count(session.account),
    )
    now = st.now()
    return render_page(
        request,
        "settings/links.html",
        session,
        {
            "links": [(row, row.status(now), scope_text(Scope.parse(row.scope))) for row in rows],
            "total": total,
            "page": number,
            "pages": max(1, -(-total // size)),
            "done": _done(request),
        },
    )


@signed_in
async def revoke(request: web.Request, session: Session) -> web.StreamResponse:
    """Revoke one of this account's links; it stops opening at once."""
    st = state(request)
    link_id = request.match_info["link_id"]
    registry = st.core.store.links
    record = await registry.get(session.account, link_id)
    if record is None:
        return render(request, NO_SUCH_LINK)
    now = int(st.now())
    if await registry.revoke(session.account, link_id, now=now):
        await st.core.store.activity.record(
            session.account,
            kind=LINK_REVOKED,
            outcome="ok",
            subject=f"{record.customer_name} ({record.customer_code})",
            detail=f"link {link_id}",
            at=now,
        )
    return see_other(url(request, ROUTE_LINKS) + "?done=revoked")


@signed_in
async def revoke_all_confirm(request: web.Request, session: Session) -> web.StreamResponse:
    """The confirmation step before revoking every link of the account."""
    st = state(request)
    total = await st.core.store.links.count(session.account)
    return render_page(request, "settings/revoke_all.html", session, {"total": total, "error": ""})


@signed_in
async def revoke_all(request: web.Request, session: Session) -> web.StreamResponse:
    """Revoke every link the account issued before now, listed here or not."""
    st = state(request)
    form = await request.post()
    if forms.text(form, "confirm") != "revoke-all":
        total = await st.core.store.links.count(session.account)
        return render_page(
            request,
            "settings/revoke_all.html",
            session,
            {"total": total, "error": "Tick the box to confirm that every link should stop."},
            status=400,
        )
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
    return see_other(url(request, ROUTE_LINKS) + "?done=revoked_all")


# -- the mail bot ------------------------------------------------------------------------


async def _stuck_mail(st: SettingsState, settings: BotSettings) -> list[SpoolEntry]:
    """Parked and retrying messages of this account (filed under it when accepted)."""
    return await st.core.store.spool.list(STUCK_STATES, limit=50, account=settings.account)


async def _bot_page(
    request: web.Request,
    session: Session,
    *,
    settings: BotSettings | None = None,
    values: Mapping[str, object] | None = None,
    error: str = "",
    test_error: str = "",
    test_to: str = "",
    domain_error: str = "",
    status: int = 200,
) -> web.Response:
    st = state(request)
    settings = settings or await st.core.store.accounts.get(session.account)
    wording = settings.wording
    if values is not None:
        typed = forms.wording_fields(values)
        wording = Wording(typed["greeting"], typed["intro"], typed["sign_off"])
    return render_page(
        request,
        "settings/bot.html",
        session,
        {
            "bot": settings,
            "values": values,
            "attachment_mb": max(1, round(settings.max_attachment_bytes / (1024 * 1024))),
            "preview": preview_reply(wording, company_name=session.company_name),
            "wording": wording,
            "stuck": await _stuck_mail(st, settings),
            "domains": await st.core.store.domains.list(session.account),
            "domain_error": domain_error,
            "mailbox": await st.core.store.mailboxes.get(session.account),
            "error": error,
            "test_error": test_error,
            "test_to": test_to,
            "can_email": True,
            "done": _done(request),
        },
        status=status,
    )


@signed_in
async def bot(request: web.Request, session: Session) -> web.StreamResponse:
    """The bot's settings, the stuck mail, the reply preview and the relay test."""
    return await _bot_page(request, session)


@signed_in
async def save_bot(request: web.Request, session: Session) -> web.StreamResponse:
    """Save the bot page (or, with the Preview button, only show the reply preview)."""
    st = state(request)
    form = await request.post()
    accounts = st.core.store.accounts
    current = await accounts.get(session.account)
    if forms.text(form, "action") == "preview":
        return await _bot_page(request, session, settings=current, values=form)
    try:
        submitted = forms.bot_form(form, current)
        unproved = await _unproved(st, session, current, submitted)
        if unproved:
            return await _bot_page(
                request,
                session,
                settings=current,
                values=form,
                error=unproved,
                status=400,
            )
        mailbox = mailbox_form(form)
        await _save_secrets(st, session, submitted)
        await accounts.update(session.account, **submitted.changes)
        if mailbox is not None:
            await save_mailbox(st.core.store.mailboxes, session.account, mailbox)
    except (forms.FormError, ValueError) as error:
        return await _bot_page(
            request,
            session,
            settings=await accounts.get(session.account),
            values=form,
            error=str(error),
            status=400,
        )
    except KashFlowError as error:
        return await _bot_page(
            request,
            session,
            settings=current,
            values=form,
            error=_bot_login_trouble(error),
            status=400,
        )
    return see_other(url(request, ROUTE_BOT) + "?done=saved")


async def _unproved(
    st: SettingsState, session: Session, current: BotSettings, submitted: forms.BotForm
) -> str:
    """Why a new request or reply-from address cannot be saved yet ("" if it can).

    An address at a domain the account has not proved it controls would route (or speak
    for) another firm's mail; the page shows the DNS record that proves it.
    """
    changed = [
        str(submitted.changes.get(name, "")).strip()
        for name, now in (
            ("request_address", current.request_address),
            ("reply_from", current.reply_from),
        )
        if str(submitted.changes.get(name, "")).strip().lower() != now.lower()
    ]
    missing = await st.core.unproved_domains(session.account, *[a for a in changed if a])
    if not missing:
        return ""
    proof = await st.core.store.domains.challenge(session.account, missing[0])
    return (
        f"Nothing was saved: first prove that this account controls {proof.domain}. "
        f"Publish a DNS TXT record named {proof.record_name} with the text "
        f"{proof.record_value}, then press “Check the domain” below."
    )


@signed_in
async def prove_domain(request: web.Request, session: Session) -> web.StreamResponse:
    """Look for the account's proof record in DNS for the typed domain."""
    st = state(request)
    form = await request.post()
    domain = forms.text(form, "domain").strip()
    try:
        found = await st.core.prove_domain(session.account, domain)
    except ValueError as error:
        return await _bot_page(request, session, domain_error=str(error), status=400)
    if not found.proved:
        return await _bot_page(
            request, session, domain_error=f"Not proved yet: {found.problem}.", status=400
        )
    return see_other(url(request, ROUTE_BOT) + "?done=domain_proved")


def _bot_login_trouble(error: KashFlowError) -> str:
    if isinstance(error, BadCredentials):
        return (
            "KashFlow did not accept the bot's password for this account; nothing was saved. "
            "Use the account's API password."
        )
    return _trouble(error) + " Nothing was saved."


async def _save_secrets(st: SettingsState, session: Session, submitted: forms.BotForm) -> None:
    """Store what the form says about the bot's password and the relay's, sealed.

    Done before the plain settings, because turning the bot on needs its credentials.
    A typed bot password is checked with KashFlow first, so a typo never gets stored.
    """
    assert session.credentials is not None
    accounts = st.core.store.accounts
    if submitted.bot_password:
        candidate = Credentials(session.credentials.username, submitted.bot_password)
    elif submitted.use_my_credentials:
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
    if submitted.relay_password:
        await accounts.set_relay_password(session.account, submitted.relay_password)
    elif submitted.forget_relay_password:
        await accounts.set_relay_password(session.account, None)


def _valid_address(text: str) -> bool:
    name, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    return bool(
        at and local and "." in domain and address == text and not name and len(text) <= 254
    )


@signed_in
async def test_email(request: web.Request, session: Session) -> web.StreamResponse:
    """Send a test message through the relay, to the company's email or a typed address."""
    st = state(request)
    form = await request.post()
    typed = forms.text(form, "to").strip()
    to = typed or session.company_email
    settings = await st.core.store.accounts.get(session.account)
    problem = ""
    if not settings.relay.host:
        problem = "Save the outgoing mail relay first, then send the test."
    elif not to:
        problem = "Type the address the test should go to."
    elif not _valid_address(to):
        problem = f"{to!r} is not an email address."
    elif not await st.core.store.limits.try_acquire(
        f"{session.account}:test-email",
        limit=st.config.test_emails_per_hour,
        window_s=3600.0,
        now=st.now(),
    ):
        problem = (
            f"At most {st.config.test_emails_per_hour} test emails an hour can be sent; "
            "please try again later."
        )
    if not problem:
        sender = settings.sender or session.company_email or to
        message = compose_test_email(
            to=to,
            from_addr=sender,
            company_name=session.company_name,
            relay=f"{settings.relay.host}:{settings.relay.port}",
        )
        problem = await _send(st, session, message, [to], kind=TEST_EMAIL, about=None)
    if problem:
        return await _bot_page(
            request, session, settings=settings, test_error=problem, test_to=typed, status=400
        )
    return see_other(url(request, ROUTE_BOT) + "?done=test_sent")


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
    return render_page(
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
    router.add_get("/settings/revoke-all", revoke_all_confirm, name="settings.revoke_all_confirm")
    router.add_post("/settings/revoke-all", revoke_all, name=ROUTE_REVOKE_ALL)
    router.add_get("/settings/bot", bot, name=ROUTE_BOT)
    router.add_post("/settings/bot", save_bot, name="settings.save_bot")
    router.add_post("/settings/bot/test-email", test_email, name=ROUTE_TEST_EMAIL)
    router.add_post("/settings/bot/domain", prove_domain, name=ROUTE_PROVE_DOMAIN)
    router.add_get("/settings/activity", activity, name=ROUTE_ACTIVITY)


__all__ = ["add_routes"]
