"""The Mailer seam: how the core hands a message to an account's outgoing relay.

:class:`permalink.relay.SmtpMailer` is the implementation the product runs (SMTP with
STARTTLS/SSL and AUTH through aiosmtplib). A Mailer raises
:class:`permalink.relay.TemporaryFailure` or :class:`~permalink.relay.PermanentFailure`
when the relay does not take a message; ``str()`` of either is a sentence fit for the
accountant and never holds a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol

from permalink.relay import Relay


class Mailer(Protocol):
    async def send(
        self, relay: Relay, message: EmailMessage, *, recipients: Sequence[str], sender: str
    ) -> None:
        """Hand ``message`` to ``relay`` for exactly ``recipients`` (envelope ``sender``;
        ``""`` is the null sender)."""
        ...

    async def probe(self, relay: Relay) -> None:
        """Connect, secure and authenticate as ``send`` would, without sending anything."""
        ...


__all__ = ["Mailer"]
