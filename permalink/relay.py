"""An account's outgoing SMTP relay: the Mailer the core sends every message through.

The bot's replies and the settings pages' mail (emailed links, relay tests) leave through
the account's own relay, configured on the bot page.

:class:`Relay` holds the relay settings (the password never appears in a repr, a log line
or an exception). :func:`send` hands one message to the relay and turns every way that can
fail into one of two answers the worker acts on:

* :class:`TemporaryFailure` -- a 4xx reply, or the relay unreachable, slow, dropping the
  connection or failing the TLS handshake: keep the message and try again after
  :func:`backoff`;
* :class:`PermanentFailure` -- a 5xx reply: the relay will not take this message as it is.

Both carry the relay's reply code and text, and the SMTP stage that failed, so the
settings page can say what happened. A failure with ``stage == "auth"`` (bad credentials,
TLS required) is about the relay settings rather than the message: a worker may prefer to
keep such messages for a retry once the settings are fixed instead of parking them.
:attr:`DeliveryFailure.public_reason` says what failed without the relay's own words, for
pages that anyone signed in can point at any relay.

Every connection goes through :mod:`permalink.egress`: the relay's name is resolved once,
checked (public addresses on mail ports only, unless the operator allowed the relay), and
the connection made to the address that was checked.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal, get_args

import aiosmtplib

from permalink.accounts import BotSettings
from permalink.egress import RelayAllowList, RelayNotAllowed, connect, pinned_addresses

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "ssl"]
Stage = Literal["connect", "auth", "sender", "recipient", "data", "other"]

SECURITY_CHOICES: tuple[Security, ...] = get_args(Security)

#: Why mail to an internationalised address (``josé@example.es``) cannot leave.
SMTPUTF8_MISSING = (
    "the relay does not offer SMTPUTF8, which an address with non-ASCII characters before "
    "the @ needs; use a relay that does, or ask the client for another address"
)


@dataclass(frozen=True, slots=True)
class Relay:
    """Where and how the bot hands over its replies."""

    host: str
    port: int = 587
    security: Security = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    ca_file: str | None = None
    """A PEM bundle to trust instead of the system's (a private CA, or the demo's)."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("the relay needs a host name")
        if not 0 < self.port < 65536:
            raise ValueError(f"relay port {self.port} is not a TCP port")
        if self.security not in SECURITY_CHOICES:
            raise ValueError(f"relay security must be one of {', '.join(SECURITY_CHOICES)}")
        if bool(self.username) != bool(self.password):
            raise ValueError("the relay needs both a user name and a password, or neither")
        if self.timeout <= 0:
            raise ValueError("the relay timeout must be positive")

    def tls_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=self.ca_file)


class DeliveryFailure(Exception):
    """The relay did not take the message; ``str()`` is a sentence for the settings page."""

    temporary: bool = True

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        stage: Stage = "other",
        public: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.stage = stage
        self._public = public

    @property
    def public_reason(self) -> str:
        """What failed, in our words only: never the relay's banner or reply text."""
        if self._public is not None:
            return self._public
        what = _STAGE_WORDS[self.stage]
        code = f" (SMTP {self.code})" if self.code is not None else ""
        return f"the relay {what}{code}"


_STAGE_WORDS: dict[Stage, str] = {
    "connect": "could not be reached or did not accept the connection",
    "auth": "did not accept the user name and password, or requires TLS",
    "sender": "refused the sender address",
    "recipient": "refused the recipient address",
    "data": "refused the message",
    "other": "did not take the message",
}


class TemporaryFailure(DeliveryFailure):
    temporary = True


class PermanentFailure(DeliveryFailure):
    temporary = False


_STAGES: tuple[tuple[type[aiosmtplib.SMTPResponseException], Stage], ...] = (
    (aiosmtplib.SMTPAuthenticationError, "auth"),
    (aiosmtplib.SMTPSenderRefused, "sender"),
    (aiosmtplib.SMTPRecipientRefused, "recipient"),
    (aiosmtplib.SMTPDataError, "data"),
    (aiosmtplib.SMTPConnectResponseError, "connect"),
    (aiosmtplib.SMTPHeloError, "connect"),
)


# Replies that are about our credentials or TLS, whichever command drew them (RFC 4954
# section 6, RFC 3207 section 4): the relay settings are wrong, not this message.
_AUTH_CODES = frozenset({454, 530, 534, 535, 538})


def _from_reply(code: int, text: str, stage: Stage) -> DeliveryFailure:
    if code in _AUTH_CODES:
        stage = "auth"
    reason = f"relay refused at {stage}: {code} {text}".strip()
    if 500 <= code < 600:
        return PermanentFailure(reason, code=code, stage=stage)
    return TemporaryFailure(reason, code=code, stage=stage)


def classify(error: Exception) -> DeliveryFailure:
    """Map an aiosmtplib or socket error to a temporary or permanent failure."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refusals = error.recipients
        if not refusals:
            return TemporaryFailure("relay refused every recipient", stage="recipient")
        # Permanent only when every refusal is: one 4xx means a retry may get through.
        temporary = [refusal for refusal in refusals if not 500 <= refusal.code < 600]
        first = (temporary or refusals)[0]
        return _from_reply(first.code, first.message, "recipient")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        stage: Stage = next((at for kind, at in _STAGES if isinstance(error, kind)), "other")
        return _from_reply(error.code, error.message, stage)
    if isinstance(error, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TemporaryFailure("relay did not answer in time", stage="connect")
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return TemporaryFailure(f"TLS with the relay failed: {error}", stage="connect")
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return TemporaryFailure(f"relay does not support it: {error.message}", stage="connect")
    if isinstance(error, aiosmtplib.SMTPException):
        return TemporaryFailure(f"relay connection failed: {error.message}", stage="connect")
    if isinstance(error, OSError):
        return TemporaryFailure(
            f"relay unreachable: {error.strerror or type(error).__name__}", stage="connect"
        )
    return TemporaryFailure(f"sending failed: {type(error).__name__}")


async def send(
    relay: Relay,
    message: EmailMessage,
    *,
    recipients: Sequence[str],
    sender: str,
    allow: RelayAllowList | None = None,
) -> None:
    """Hand ``message`` to the relay for ``recipients`` only.

    ``sender`` is the envelope sender; ``""`` sends with the null sender ``<>``, which
    RFC 3834 section 3.3 recommends for automatic replies. Header addresses (To, Cc, Bcc)
    never add recipients. Raises :class:`TemporaryFailure` or :class:`PermanentFailure`.
    """
    if not recipients:
        raise PermanentFailure("no recipient for the reply", stage="recipient")
    try:
        client = await _client(relay, allow)
        async with client:
            refused, reply = await client.send_message(
                message, sender=sender, recipients=list(recipients)
            )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        failure = classify(error)
        if isinstance(error, aiosmtplib.SMTPNotSupported) and not all(
            address.isascii() for address in (sender, *recipients)
        ):
            # RFC 6531: an address whose local part is not ASCII travels over SMTPUTF8
            # only. A relay without it will not learn it by the next try.
            failure = PermanentFailure(SMTPUTF8_MISSING, stage="recipient", public=SMTPUTF8_MISSING)
        log.warning(
            "relay %s:%d did not take message %s: %s",
            relay.host,
            relay.port,
            message.get("Message-ID", "-"),
            failure,
        )
        raise failure from error
    if refused:
        # The message went to the others; retrying would send them a second copy.
        log.warning(
            "relay %s:%d refused %d of %d recipients of %s",
            relay.host,
            relay.port,
            len(refused),
            len(recipients),
            message.get("Message-ID", "-"),
        )
    log.info(
        "relay %s:%d took message %s: %s",
        relay.host,
        relay.port,
        message.get("Message-ID", "-"),
        reply,
    )


async def _client(relay: Relay, allow: RelayAllowList | None) -> aiosmtplib.SMTP:
    """A client on a socket already connected to the checked address of the relay.

    Raises :class:`PermanentFailure` (stage ``connect``) for a relay the policy refuses.
    """
    try:
        addresses = await pinned_addresses(relay.host, relay.port, allow or RelayAllowList())
    except RelayNotAllowed as refused:
        raise PermanentFailure(str(refused), stage="connect", public=str(refused)) from None
    sock = await connect(addresses, relay.port, relay.timeout)
    # The name, not the address, is what TLS checks the relay's certificate against.
    return aiosmtplib.SMTP(
        hostname=relay.host,
        sock=sock,
        timeout=relay.timeout,
        use_tls=relay.security == "ssl",
        start_tls=relay.security == "starttls",
        tls_context=relay.tls_context(),
        username=relay.username or None,
        password=relay.password or None,
    )


async def probe(relay: Relay, allow: RelayAllowList | None = None) -> None:
    """Connect, secure and authenticate as ``send`` would, without sending anything."""
    try:
        async with await _client(relay, allow) as client:
            await client.noop()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise classify(error) from error


def relay_for(
    settings: BotSettings,
    password: str | None,
    *,
    timeout: float = 30.0,
    ca_file: str | None = None,
) -> Relay:
    """The relay an account saved on the settings page (ValueError if it is incomplete)."""
    return Relay(
        host=settings.relay.host,
        port=settings.relay.port,
        security=settings.relay.security,
        username=settings.relay.username,
        password=password or "",
        timeout=timeout,
        ca_file=ca_file,
    )


class SmtpMailer:
    """The :class:`permalink.mailer.Mailer` that speaks SMTP to the relay (aiosmtplib).

    ``allow`` lists the relays the operator allows outside the address rules.
    """

    def __init__(self, allow: RelayAllowList | None = None) -> None:
        self.allow = allow or RelayAllowList()

    async def send(
        self, relay: Relay, message: EmailMessage, *, recipients: Sequence[str], sender: str
    ) -> None:
        await send(relay, message, recipients=recipients, sender=sender, allow=self.allow)

    async def probe(self, relay: Relay) -> None:
        await probe(relay, self.allow)


def backoff(
    attempt: int, *, base: float = 30.0, cap: float = 3600.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: 30 s doubling to 1 h, with jitter.

    Jitter (between 75% and 100% of the step) spreads retries of many messages that failed
    together so they do not hit a recovering relay at once.
    """
    doublings = min(max(0, attempt - 1), 32)  # past the cap anyway; keeps the float finite
    step = min(cap, math.ldexp(base, doublings))
    draw: float = (rng or random).uniform(0.75, 1.0)
    return step * draw


__all__ = [
    "SECURITY_CHOICES",
    "SMTPUTF8_MISSING",
    "DeliveryFailure",
    "PermanentFailure",
    "Relay",
    "Security",
    "SmtpMailer",
    "Stage",
    "TemporaryFailure",
    "backoff",
    "classify",
    "probe",
    "relay_for",
    "send",
]
