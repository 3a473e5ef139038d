"""The failures a caller of the KashFlow gateway must tell apart.

KashFlow reports business errors in-band (HTTP 200, ``Status`` ``NO`` and a sentence in
``StatusDetail``); the gateway maps each to one of these. Messages are written for people
and never carry credentials; the raw ``StatusDetail`` is kept in ``detail`` for logs.
"""

import re


class KashFlowError(Exception):
    """Base class: KashFlow could not answer the question asked."""

    message = "KashFlow could not complete the request."

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.message)
        self.detail = detail


class BadCredentials(KashFlowError):
    """Username or (API) password rejected: ``Incorrect username or password``."""

    message = "KashFlow did not accept the username or password."


class ApiDisabled(KashFlowError):
    """The account has not ticked "Enable SOAP API" in KashFlow's API settings."""

    message = "The KashFlow API is not enabled for this account."


class IpNotAuthorised(KashFlowError):
    """The caller's IP address is not on the account's API allow-list."""

    message = "KashFlow refused this server's IP address."

    @property
    def ip(self) -> str:
        """The refused address as KashFlow named it ("The IP address of … is not in the
        access list"), or "" when the sentence does not say."""
        found = _REFUSED_IP.search(self.detail)
        return found.group(1) if found else ""


class NotFound(KashFlowError):
    """No such customer or invoice (``Status`` NO, or OK with a zeroed record)."""

    message = "KashFlow has no such record."


class Rejected(KashFlowError):
    """Any other ``Status`` NO, or a SOAP fault: KashFlow refused the request."""

    message = "KashFlow rejected the request."


class Unavailable(KashFlowError):
    """KashFlow could not be reached, timed out, or answered something unreadable."""

    message = "KashFlow is not answering right now."

    def __init__(self, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        #: Seconds KashFlow asked us to wait (``Retry-After`` on a 429 or 503), if it said.
        self.retry_after = retry_after


class BadDocument(KashFlowError):
    """PrintInvoice pointed at something that is not a readable PDF."""

    message = "KashFlow returned an invoice document that is not a PDF."


# An IPv4 or IPv6 address (with an optional zone), no more: the detail is KashFlow's text.
_REFUSED_IP = re.compile(r"IP address of \s*\[?([0-9A-Fa-f:.%]+?)\]?\s+is not in")
