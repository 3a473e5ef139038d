"""One place that turns a KashFlow failure into words, for whoever has to read them.

A client opening a link, the accountant signing in, the accountant mid-session and the
bot's activity log each need a different sentence about the same failure (bad
credentials, API off, IP refused, KashFlow down, a broken document, a refusal). They are
all here, so the advice stays consistent and can be corrected once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

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
from permalink.i18n import N_

Reader = Literal["client", "sign_in", "accountant", "bot"]

#: Where KashFlow keeps the settings every piece of advice points at.
API_SETTINGS: Final = "Apps → API Settings"
#: Seconds a visitor is asked to wait when KashFlow is not answering.
RETRY_AFTER_S: Final = 60


@dataclass(frozen=True, slots=True)
class Words:
    """What to say: a title (pages only), the sentence, the HTTP status a page answers
    with, and whether trying again later may help."""

    title: str
    text: str
    status: int
    temporary: bool = False
    retry_after: int | None = None


_CLIENT: Final[Mapping[type[KashFlowError], Words]] = {
    BadCredentials: Words(
        N_("This link needs renewing"),
        N_(
            "The business's KashFlow sign-in has changed since this link was made — ask them "
            "for a new link."
        ),
        503,
    ),
    IpNotAuthorised: Words(
        N_("KashFlow turned this service away"),
        N_(
            "The business's KashFlow settings do not let this service in at the moment — please "
            "ask the business that sent you this link."
        ),
        503,
    ),
    ApiDisabled: Words(
        N_("Invoices are not being shared right now"),
        N_(
            "The business's KashFlow account is not set up to share invoices at the moment — "
            "please ask the business that sent you this link."
        ),
        503,
    ),
    Unavailable: Words(
        N_("KashFlow isn't answering"),
        N_("KashFlow isn't answering — try again in a minute."),
        503,
        temporary=True,
        retry_after=RETRY_AFTER_S,
    ),
    BadDocument: Words(
        N_("The invoice document could not be read"),
        N_(
            "KashFlow sent back an invoice document we could not read. Please try again later, "
            "or ask the business for a copy."
        ),
        502,
        temporary=True,
    ),
    NotFound: Words(
        N_("Invoice not found"),
        N_(
            "This link does not give access to that invoice. Go back to the list of invoices "
            "and choose one from there."
        ),
        404,
    ),
    Rejected: Words(
        N_("KashFlow could not answer"),
        N_(
            "KashFlow could not complete the request. Please try again later, or ask the "
            "business that sent you this link."
        ),
        502,
    ),
}

_SIGN_IN: Final[Mapping[type[KashFlowError], Words]] = {
    BadCredentials: Words(
        "Sign-in refused",
        "KashFlow did not accept that username and password. Use your KashFlow username "
        "and its API password: if “Use a separate API password” is ticked in KashFlow "
        f"({API_SETTINGS}), enter that password here, not your web login.",
        401,
    ),
    ApiDisabled: Words(
        "The KashFlow API is off",
        f"The KashFlow API is not enabled for this account. In KashFlow, open {API_SETTINGS} "
        "and tick “Enable SOAP API”. While there, we recommend setting a separate API "
        "password and signing in here with it, so links never hold your web login.",
        403,
    ),
    IpNotAuthorised: Words(
        "KashFlow refused this server",
        f"KashFlow refused this server's IP address{{named}}. In KashFlow, open {API_SETTINGS} "
        "and add {address} to the allowed addresses, or untick the IP address restriction.",
        403,
    ),
    Unavailable: Words(
        "KashFlow isn't answering",
        "KashFlow is not answering right now, so your sign-in could not be checked. "
        "Please try again in a minute.",
        503,
        temporary=True,
    ),
    Rejected: Words(
        "KashFlow could not check your sign-in",
        "KashFlow could not check your sign-in just now. Please try again in a minute.",
        502,
        temporary=True,
    ),
}

_ACCOUNTANT: Final[Mapping[type[KashFlowError], Words]] = {
    BadCredentials: Words(
        "KashFlow no longer accepts your password",
        "KashFlow no longer accepts the password you signed in with. Sign in again with the "
        "current API password.",
        502,
    ),
    ApiDisabled: Words(
        "The KashFlow API is off",
        f"The KashFlow API has been turned off for this account ({API_SETTINGS} in KashFlow).",
        502,
    ),
    IpNotAuthorised: Words(
        "KashFlow refused this server",
        f"KashFlow refused this server's IP address{{named}}. Add it in KashFlow under "
        f"{API_SETTINGS}, or untick the IP address restriction.",
        502,
    ),
    Unavailable: Words(
        "KashFlow isn't answering",
        "KashFlow is not answering right now. Please try again in a minute.",
        503,
        temporary=True,
    ),
    Rejected: Words(
        "KashFlow could not answer",
        "KashFlow could not answer just now. Please try again in a minute.",
        502,
        temporary=True,
    ),
}

_BOT: Final[Mapping[type[KashFlowError], Words]] = {
    Unavailable: Words("", "KashFlow unavailable: {message}", 503, temporary=True),
    BadCredentials: Words("", "{message} Check the bot's KashFlow settings.", 502),
    ApiDisabled: Words("", "{message} Check the bot's KashFlow settings.", 502),
    IpNotAuthorised: Words("", "{message} Check the bot's KashFlow settings.", 502),
    KashFlowError: Words("", "{message}", 502),
}

_TABLES: Final[Mapping[Reader, Mapping[type[KashFlowError], Words]]] = {
    # Any other failure reads as the table's "refused" entry.
    "client": {**_CLIENT, KashFlowError: _CLIENT[Rejected]},
    "sign_in": {**_SIGN_IN, KashFlowError: _SIGN_IN[Rejected]},
    "accountant": {**_ACCOUNTANT, KashFlowError: _ACCOUNTANT[Rejected]},
    "bot": _BOT,
}


def words_for(error: KashFlowError, reader: Reader) -> Words:
    """What ``reader`` is told about ``error`` (the most specific entry that matches)."""
    table = _TABLES[reader]
    # KashFlow's refusal names the address it saw: the advice names it too.
    ip = error.ip if isinstance(error, IpNotAuthorised) else ""
    for cls in type(error).__mro__:
        found = table.get(cls)
        if found is not None:
            return Words(
                found.title,
                found.text.format(
                    message=error.message,
                    named=f", {ip}" if ip else "",
                    address=ip or "this server's public IP address",
                ),
                found.status,
                found.temporary,
                found.retry_after,
            )
    raise AssertionError("every table answers KashFlowError")  # pragma: no cover


__all__ = ["API_SETTINGS", "RETRY_AFTER_S", "Reader", "Words", "words_for"]
