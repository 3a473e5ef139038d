"""Email addresses the product sends to: checked, and written the way SMTP needs them.

Addresses come from outside: KashFlow's Email field (a customer's, where a line break or
a typo is one keystroke away) and a request's From header (an unknown sender's neutral
reply). Before anything is sent to one, :func:`mailbox` checks it with email-validator
(RFC 5321/5322 syntax, internationalised addresses per RFC 6531/6532, IDNA 2008 domains,
no DNS look-up), so a line break, a space, a second ``@`` or a domain that cannot be one
is refused with a sentence that says why, never a crash in the mail library.

Internationalised addresses are sent to, not refused: an address whose local part is
ASCII is written in ASCII (its domain in the ``xn--`` form), which any relay takes; one
whose local part is not (``josé@example.es``) can only travel over SMTPUTF8 (RFC 6531),
so it is kept in UTF-8 and the relay must offer that extension
(:mod:`permalink.relay` says so plainly when it does not).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass

from email_validator import EmailNotValidError, ValidatedEmail, validate_email

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHOWN_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: How much of a bad address a sentence quotes.
_SHOWN = 80


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A checked address: ``address`` is the bare addr-spec to write in To and RCPT TO."""

    address: str
    display_name: str = ""

    @property
    def needs_smtputf8(self) -> bool:
        """Only a relay offering SMTPUTF8 can carry it (its local part is not ASCII)."""
        return not self.address.isascii()


class NotAnAddress(ValueError):
    """``text`` is not an address mail can be sent to; ``str()`` is a sentence saying why,
    fit for a page or a parked message's reason."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"“{shown(text)}” is not a valid email address: {reason}")


def mailbox(text: str) -> Mailbox:
    """``text`` (an addr-spec, or ``Name <addr-spec>``) checked and in its sendable form.

    Plain ASCII addresses are kept as written; others are normalised (Unicode NFC, the
    domain lower-cased) and written in ASCII when their local part allows.
    """
    stripped = text.strip()
    try:
        checked = _check(stripped)
    except EmailNotValidError as error:
        display, spec = email.utils.parseaddr(stripped)
        if not (display and spec) or _CONTROL.search(stripped):
            raise NotAnAddress(text, str(error).rstrip(".") + ".") from None
        # A display name email-validator will not take unquoted ("Zoë <zoe@…>"): it is
        # only ever dropped, so the address inside decides.
        try:
            checked = _check(spec)
        except EmailNotValidError as inner:
            raise NotAnAddress(text, str(inner).rstrip(".") + ".") from None
    display = checked.display_name or ""
    if not display and stripped.isascii() and "<" not in stripped:
        return Mailbox(stripped)  # as KashFlow (or the sender) wrote it
    return Mailbox(checked.ascii_email or checked.normalized, display)


def _check(text: str) -> ValidatedEmail:
    # Quoted local parts ("ruth smith"@…) are rare but valid, and a client may have one.
    return validate_email(
        text,
        allow_smtputf8=True,
        allow_display_name=True,
        allow_quoted_local=True,
        check_deliverability=False,
    )


def usable(entries: Iterable[str]) -> tuple[list[Mailbox], list[NotAnAddress]]:
    """The entries mail can be sent to, and why each of the others cannot."""
    good: list[Mailbox] = []
    bad: list[NotAnAddress] = []
    for entry in entries:
        try:
            good.append(mailbox(entry))
        except NotAnAddress as refused:
            bad.append(refused)
    return good, bad


def shown(text: str) -> str:
    """``text`` fit to quote in one line: control characters made visible, cut short."""
    visible = _CONTROL.sub(lambda m: _SHOWN_CONTROL.get(m[0], f"\\x{ord(m[0]):02x}"), text)
    return visible if len(visible) <= _SHOWN else visible[: _SHOWN - 1] + "…"


__all__ = ["Mailbox", "NotAnAddress", "mailbox", "shown", "usable"]
