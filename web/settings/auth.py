"""Signing the accountant in and out, and the guard every other settings page stands behind.

Sign-in asks KashFlow itself (``GetCompanyDetails``) whether the API username and
password work; each way it can say no gets its own page text telling the accountant what
to change in KashFlow (:mod:`permalink.trouble`). When KashFlow refuses the server's IP
address the page names the address and offers AutoAuth: given the key KashFlow shows the
account owner, the next sign-in first asks KashFlow (``AutoAuthIP``) to add the address
itself; nothing does so unasked. Like every settings form, a refused sign-in answers with
a redirect back to the form and a one-time message (:mod:`web.settings.once`). Failed
sign-ins (and refused AutoAuth keys) are counted per client address, and per username
*from that address*, in the store (so every web process sees them); past a few, the form
page answers 429 with Retry-After and says how long to wait, and says so again while the
wait lasts. Someone failing for a username from elsewhere therefore cannot lock its real
owner out. A sign-in that finds links broken by a KashFlow password change lands on the
re-issue page (:mod:`web.settings.reissue`).

Each sign-in is recorded in the store (:mod:`permalink.sessions`); signing out ends the
record, so the old cookie stops working at once, in every process. A changed KashFlow
password ends sessions too: whenever KashFlow refuses a session's credentials (on any page
that asks it, and at least every few minutes on every page) the session is ended and the
sign-in page says why (:class:`SessionRefused`).

:func:`signed_in` wraps a view: no live session → the sign-in page; a POST without the
session's CSRF token or from a foreign ``Origin`` → a 403 page. Nothing else reaches a view.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

import aiohttp_jinja2
from aiohttp import web

from kashflow.errors import BadCredentials, IpNotAuthorised, KashFlowError, Rejected
from kashflow.models import Credentials
from permalink.accounts import account_key
from permalink.core import Core
from permalink.gateway import KashFlowAccount
from permalink.limits import ThrottlePolicy
from permalink.reissue import survey
from permalink.submissions import Outcome
from permalink.trouble import words_for
from web.errors import ErrorPage, render
from web.security import client_address
from web.settings import csrf, once
from web.settings import session as sessions
from web.settings.session import Session, SessionCodec

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SessionView = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]

ROUTE_LOGIN: Final = "settings.login"
ROUTE_LOGOUT: Final = "settings.logout"
ROUTE_HOME: Final = "settings.customers"
ROUTE_REISSUE: Final = "settings.reissue"

FORM_EXPIRED: Final = ErrorPage(
    403,
    "This form has expired",
    "For your safety the form could not be accepted: it was opened too long ago, in "
    "another browser session, or sent from another site. Go back, reload the page and "
    "try again.",
)


NOT_ALLOWED: Final = (
    "KashFlow accepted you, but this server serves only the KashFlow accounts its operator "
    "has allowed, and {username} is not one of them. If it should be, ask whoever runs this "
    "server to add it to the allowed accounts (its ALLOWED_ACCOUNTS setting)."
)


@dataclass(frozen=True, slots=True)
class SettingsConfig:
    """Tunables of the settings pages (the defaults suit production)."""

    #: How long a sign-in lasts (seconds).
    session_ttl_s: int = 8 * 3600
    #: Failed sign-ins a client address or a username gets free within the window.
    login_free_attempts: int = 5
    login_window_s: float = 900.0
    login_max_delay_s: float = 300.0
    #: Rows per page on the links and activity pages.
    page_size: int = 25
    #: How often a session's credentials are asked of KashFlow again on pages that do
    #: not otherwise call it (seconds): a changed password ends the session within this.
    recheck_s: float = 300.0
    #: Test emails an account may send in an hour (each connects to the relay it names).
    test_emails_per_hour: int = 5

    @property
    def login_policy(self) -> ThrottlePolicy:
        return ThrottlePolicy(
            free=self.login_free_attempts,
            window_s=self.login_window_s,
            base_delay_s=2.0,
            max_delay_s=self.login_max_delay_s,
        )

    def __post_init__(self) -> None:
        if not 60 <= self.session_ttl_s <= 7 * 86_400:
            raise ValueError("session_ttl_s must be between 60 seconds and 7 days")
        if self.login_free_attempts < 0 or self.login_window_s <= 0:
            raise ValueError("login throttling needs a non-negative allowance and a window")
        if not 1 <= self.page_size <= 500:
            raise ValueError("page_size must be between 1 and 500")


class SessionRefused(Exception):
    """KashFlow no longer accepts the session's credentials (its password changed)."""


@dataclass(slots=True)
class SettingsState:
    """Everything the settings views use, shared under one app key."""

    config: SettingsConfig
    core: Core
    codec: SessionCodec
    #: When each session's credentials were last accepted by KashFlow, in this process.
    checked: dict[str, float] = field(default_factory=dict)

    async def recheck(self, session: Session) -> None:
        """Ask KashFlow again if it has been a while; :class:`SessionRefused` if it says no.

        KashFlow being down is not a reason to end anyone's session: only a refusal is.
        """
        now = self.now()
        if now - self.checked.get(session.session_id, -math.inf) < self.config.recheck_s:
            return
        try:
            await self.account(session).company_details()
        except BadCredentials:
            raise SessionRefused from None
        except KashFlowError:
            return
        if len(self.checked) > 10_000:
            self.checked.clear()  # bounded: a forgotten entry only means one more check
        self.checked[session.session_id] = now

    #: Re-issues this process is working on (cancelled, and so resumable, at shutdown).
    workers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def public_base_url(self) -> str:
        return self.core.config.public_base_url

    @property
    def secure_cookie(self) -> bool:
        return self.public_base_url.startswith("https://")

    def now(self) -> float:
        return self.core.clock()

    def cookie(self, request: web.Request) -> Session | None:
        """The session the request's cookie holds, without asking the store."""
        return self.codec.open(request.cookies.get(sessions.COOKIE, ""), now=self.now())

    async def session(self, request: web.Request) -> Session | None:
        """The request's session; a signed-in one only while its record is live."""
        current = self.cookie(request)
        if current is None or not current.signed_in:
            return current
        if not await self.core.store.sessions.live(current.session_id, current.account, self.now()):
            return None
        if not self.core.allows(current.account):
            return None  # the operator has since taken the account off the allowed list
        return current

    def account(self, session: Session) -> KashFlowAccount:
        assert session.credentials is not None
        return self.core.kashflow(session.credentials)

    def store(self, response: web.StreamResponse, session: Session) -> None:
        max_age = max(1, session.expires - int(self.now()))
        sessions.set_cookie(
            response, self.codec.seal(session), max_age=max_age, secure=self.secure_cookie
        )


SETTINGS = web.AppKey("settings", SettingsState)


def state(request: web.Request) -> SettingsState:
    return request.app[SETTINGS]


def url(request: web.Request, name: str, **parts: str) -> str:
    return str(request.app.router[name].url_for(**parts))


see_other = once.see_other


#: The navigation entry each page belongs to (marked ``aria-current``).
_SECTIONS: Final = {
    "settings/customers.html": "settings.customers",
    "settings/customer.html": "settings.customers",
    "settings/links.html": "settings.links",
    "settings/revoke_all.html": "settings.links",
    "settings/bot.html": "settings.bot",
    "settings/activity.html": "settings.activity",
    "settings/reissue.html": "settings.links",
    "settings/reissue_job.html": "settings.links",
    "settings/business.html": "settings.business",
}


async def render_page(
    request: web.Request,
    template: str,
    session: Session,
    context: dict[str, Any],
    *,
    status: int = 200,
    message: once.Message | None = None,
) -> web.Response:
    """A settings page with what every page needs (the session's CSRF token, the company)
    and the one-time message a form left for it (taken here unless the view took it
    first), shown once with the status it set."""
    if message is None:
        message = await once.take(request, session)
    base = {
        "session": session,
        "csrf_field": csrf.FIELD,
        "csrf_token": session.csrf,
        "once_field": once.FIELD,
        "nav": _SECTIONS.get(template, ""),
        "message": message,
        "errors": message.errors,
    }
    response = aiohttp_jinja2.render_template(
        template, request, {**base, **context}, status=message.status if message else status
    )
    retry_after = message.extra.get("retry_after")
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


def forbidden(request: web.Request, page: ErrorPage = FORM_EXPIRED) -> web.Response:
    return render(request, page)


def wrong_origin(sent_from: str, public: str) -> ErrorPage:
    """A form posted from another address than the configured one: say which is which
    (a script or a proxy set up with another address meets this, not only an attacker)."""
    return ErrorPage(
        403,
        "This form was sent from another address",
        f"This server accepts its forms only from its own address, {public}, but this one "
        f"was sent from {sent_from[:200]}. Open {public}/settings/ and try again there. If "
        f"{sent_from[:200]} is the address people should use, whoever runs this server must "
        "make it the server's public base URL (its PUBLIC_BASE_URL setting).",
    )


async def form_refusal(request: web.Request, session: Session | None) -> ErrorPage | None:
    """CSRF: no foreign Origin, and the session's token in the form; the page saying what
    is wrong, or None when the form is genuine."""
    public = csrf.public_origin(state(request).public_base_url)
    origin = request.headers.get("Origin")
    if not csrf.origin_allowed(origin, public):
        assert origin is not None
        if origin.strip().lower() == "null":
            return FORM_EXPIRED  # a sandboxed frame or a data: page: no address to name
        return wrong_origin(origin.strip(), public)
    if session is None or not csrf.token_valid(await request.post(), session.csrf):
        return FORM_EXPIRED
    return None


async def form_accepted(request: web.Request, session: Session) -> bool:
    """CSRF: the session's token in the form, and no foreign Origin."""
    return await form_refusal(request, session) is None


def signed_in(view: SessionView) -> Handler:
    """Run ``view`` only for a signed-in session (and, for a POST, a genuine form)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        current = await state(request).session(request)
        if current is None or not current.signed_in:
            if current is not None or sessions.COOKIE not in request.cookies:
                return see_other(url(request, ROUTE_LOGIN))
            # A cookie that no longer opens: expired, from an old key, or tampered with.
            response = see_other(url(request, ROUTE_LOGIN) + "?notice=expired")
            sessions.clear_cookie(response, secure=state(request).secure_cookie)
            return response
        st = state(request)
        try:
            await st.recheck(current)
            if request.method == "POST":
                refusal = await form_refusal(request, current)
                if refusal is not None:
                    return forbidden(request, refusal)
            return await view(request, current)
        except SessionRefused:
            log.info("KashFlow refused a session's credentials: session ended")
            await st.core.store.sessions.end(current.session_id, st.now())
            st.checked.pop(current.session_id, None)
            response = see_other(url(request, ROUTE_LOGIN) + "?notice=password_changed")
            sessions.clear_cookie(response, secure=st.secure_cookie)
            return response

    guarded.__name__ = view.__name__
    guarded.__doc__ = view.__doc__
    return guarded


# -- sign in and out ---------------------------------------------------------------------


def _throttle_keys(request: web.Request, username: str) -> tuple[str, ...]:
    address = client_address(request)
    keys = [f"login:ip:{address}"]
    if username.strip():
        # The username *with* the address: failures for a name from one place never
        # lock out its owner signing in from another.
        keys.append(f"login:user:{account_key(username)}:{address}")
    return tuple(keys)


_NOTICES: Final = {
    "signed_out": "You are signed out.",
    "expired": "Your session ended; please sign in again.",
    "password_changed": "KashFlow no longer accepts the password you signed in with (was "
    "it changed?), so you were signed out. Please sign in with the current API password: "
    "the links made with the earlier one can then be re-issued in one step.",
}


async def login_form(request: web.Request) -> web.StreamResponse:
    """The sign-in form (straight on to the customers page if already signed in)."""
    st = state(request)
    current = await st.session(request)
    if current is not None and current.signed_in:
        return see_other(url(request, ROUTE_HOME))
    fresh = current or sessions.anonymous(st.now())
    notice = _NOTICES.get(request.query.get("notice", ""), "")
    message = await once.take(request, fresh)
    wait = await st.core.store.throttles.delay(_throttle_keys(request, "")[0], st.now())
    if wait > 0 and not notice and not message:
        # Said again after the refusal: the form is back, but sign-in waits a while yet.
        notice = _wait_text(wait, paused=True)
    response = await render_page(
        request, "settings/login.html", fresh, {"notice": notice}, message=message
    )
    if current is None:
        st.store(response, fresh)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Check the credentials live against KashFlow; on success start a signed-in session.

    Every answer is a redirect: to the customers page (or the re-issue page when the
    password changed since links were made), or back to the form with a message."""
    st = state(request)
    current = st.cookie(request)
    refusal = await form_refusal(request, current)
    if refusal is not None or current is None:
        return forbidden(request, refusal or FORM_EXPIRED)
    form = await request.post()
    username = form.get("username")
    password = form.get("password")
    username = username.strip() if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    back = url(request, ROUTE_LOGIN)

    def refused(text: str, status: int, field: str = "password", **extra: Any) -> Outcome:
        return once.problem(
            back,
            text,
            status=status,
            errors={field: text},
            values={"username": username},
            **extra,
        )

    if not username or not password:
        text = "Enter your KashFlow API username and password."
        return await once.remember(
            request, current, refused(text, 400, "password" if username else "username")
        )
    now = st.now()
    throttles = st.core.store.throttles
    keys = _throttle_keys(request, username)
    wait = max([await throttles.delay(key, now) for key in keys])
    if wait > 0:
        outcome = refused(_wait_text(wait), 429, retry_after=max(1, math.ceil(wait)))
        return await once.remember(request, current, outcome)
    credentials = Credentials(username, password)
    account = st.core.kashflow(credentials)
    auto_auth_key = form.get("auto_auth_key")
    auto_auth_key = auto_auth_key.strip() if isinstance(auto_auth_key, str) else ""
    try:
        if auto_auth_key and not await _auto_auth(account, auto_auth_key):
            for key in keys:  # a key guessed at is a password guessed at
                await throttles.hit(key, st.config.login_policy, now)
            status, text = AUTO_AUTH_REFUSED
            outcome = refused(text, status, "auto_auth_key", auto_auth_ip="")
            return await once.remember(request, current, outcome)
        company = await account.company_details()
    except KashFlowError as error:
        words = words_for(error, "sign_in")
        if isinstance(error, BadCredentials):
            for key in keys:
                await throttles.hit(key, st.config.login_policy, now)
        log.info("sign-in refused by KashFlow: %s", type(error).__name__)
        field = "password" if isinstance(error, BadCredentials) else ""
        # An IP refusal offers AutoAuth, naming the address KashFlow saw ("" if unnamed).
        offer = error.ip if isinstance(error, IpNotAuthorised) else None
        outcome = refused(words.text, words.status, field, auto_auth_ip=offer)
        return await once.remember(request, current, outcome)
    await throttles.reset(keys[-1])
    if not st.core.allows(username):
        log.info("sign-in refused: the account is not one this deployment allows")
        outcome = refused(NOT_ALLOWED.format(username=username), 403, "username")
        return await once.remember(request, current, outcome)
    session_id = await st.core.store.sessions.start(
        username, now=now, ttl_s=st.config.session_ttl_s
    )
    fresh = sessions.signed_in(
        credentials,
        session_id=session_id,
        now=now,
        ttl_s=st.config.session_ttl_s,
        company_name=company.name,
        company_email=company.email,
    )
    st.checked[session_id] = now  # KashFlow has just said yes
    changed = (await survey(st.core, credentials, int(now))).needed
    response = see_other(url(request, ROUTE_REISSUE if changed else ROUTE_HOME))
    st.store(response, fresh)
    return response


#: AutoAuthIP refused the key the accountant gave.
AUTO_AUTH_REFUSED: Final = (
    403,
    "KashFlow did not accept that AutoAuth key. Copy it again from Apps → API Settings in "
    "KashFlow, where AutoAuth must be switched on, or add this server's address to the "
    "allowed addresses there yourself.",
)


@runtime_checkable
class _AutoAuth(Protocol):
    """A gateway account that can ask KashFlow to allow this server's address."""

    async def auto_auth_ip(self, key: str) -> int: ...


async def _auto_auth(account: KashFlowAccount, key: str) -> bool:
    """Let KashFlow add this server's address to the account's allow-list (AutoAuthIP),
    asked for by the accountant after an IP refusal; False if KashFlow refused the key
    (or the gateway cannot ask)."""
    if not isinstance(account, _AutoAuth):
        return False
    try:
        await account.auto_auth_ip(key)
    except Rejected:
        log.info("sign-in: KashFlow refused the AutoAuth key")
        return False
    log.info("sign-in: KashFlow added this server's address by AutoAuth")
    return True


def _wait_text(wait: float, *, paused: bool = False) -> str:
    minutes = max(1, math.ceil(wait / 60))
    span = f"{minutes} minute{'s' if minutes != 1 else ''}"
    if paused:
        return (
            f"Signing in from here is paused after too many wrong passwords. Try again in {span}."
        )
    return (
        "Too many sign-ins with a wrong password came from here or for this username. "
        f"Please wait {span} and try again."
    )


@signed_in
async def logout(request: web.Request, session: Session) -> web.StreamResponse:
    """End the session: its record in the store, and the cookie in this browser."""
    st = state(request)
    await st.core.store.sessions.end(session.session_id, st.now())
    response = see_other(url(request, ROUTE_LOGIN) + "?notice=signed_out")
    sessions.clear_cookie(response, secure=st.secure_cookie)
    return response


__all__ = [
    "ROUTE_HOME",
    "ROUTE_LOGIN",
    "ROUTE_LOGOUT",
    "ROUTE_REISSUE",
    "SETTINGS",
    "Session",
    "SessionRefused",
    "SettingsConfig",
    "SettingsState",
    "form_accepted",
    "form_refusal",
    "login",
    "login_form",
    "logout",
    "render_page",
    "see_other",
    "signed_in",
    "state",
    "url",
]
