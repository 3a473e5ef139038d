"""What can go wrong on purpose, and what KashFlow may do differently: the sandbox's switches.

Fault switches break things (latency, hangs, resets, HTTP 500, malformed XML, random
errors, bad PDFs, throttling). Variant switches choose between the ways the live service
may behave where no public source says which it does (how an empty list is written, how
the PDF is served and whether it needs a session cookie, whether lines name their type,
how e-mail is matched, in which order a caller is checked); each default is the sandbox's
best reading of the live service.
Every switch can be flipped while the sandbox runs; ``operations`` narrows the transport
faults (hang, reset, HTTP 500, malformed XML, throttling) and the random errors to some
operations (``PDF_FETCH`` names a download of a printed PDF).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kashflow.sandbox.texts import STATUS_TEXTS

BadPdf = Literal["html", "404"]
NotFoundVariant = Literal["no", "zeroed"]
#: How an empty list comes back: ``<XResult />`` (what .NET writes for an empty array) or
#: with the result element left out altogether.
EmptyResult = Literal["element", "absent"]
#: Where the printed PDF is served: at the URL itself, or behind a redirect to another
#: path on the same host, or to another host name (``localhost`` for ``127.0.0.1``).
PdfRedirect = Literal["none", "same-host", "other-host"]
#: GetInvoicesForCustomer with a CustID no customer has: an empty list, or Status NO.
UnknownCustomerId = Literal["empty", "no"]
#: GetCustomerByEmail: any address of the field, ignoring case ("loose"), or only the
#: whole field exactly as stored ("exact").
EmailMatch = Literal["loose", "exact"]
#: PrintInvoice with ``InvoiceNumberList``: one document of every invoice listed, or (as a
#: service that ignored the list might) only the first.
ListPrint = Literal["merged", "first"]
#: What KashFlow checks about a caller, in the order it checks them.
Check = Literal["credentials", "api", "ip"]
DEFAULT_CHECK_ORDER: tuple[Check, ...] = ("credentials", "api", "ip")

# The operation name recorded for a GET of a printed or permalinked PDF.
PDF_FETCH = "pdf"


@dataclass(slots=True)
class Faults:
    """Runtime fault injection; the defaults are a healthy KashFlow."""

    latency_ms: float = 0.0
    # Probability (0..1) that a call answers Status NO with ``error_detail``.
    error_rate: float = 0.0
    error_detail: str = STATUS_TEXTS.transient
    # Operation name -> StatusDetail: that operation always answers Status NO with the text.
    status_detail: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering; ``float("inf")`` never answers (until stop()).
    hang: float | None = None
    http_500: bool = False
    malformed_xml: bool = False
    reset: bool = False
    bad_pdf: BadPdf | None = None
    not_found_variant: NotFoundVariant = "no"
    # Answer this many of the next calls (or PDF downloads) with ``throttle_status`` and a
    # ``Retry-After`` of ``retry_after`` (None: no header).
    throttle: int = 0
    throttle_status: int = 429
    retry_after: str | None = "1"
    # Limit the transport faults and random errors to these operations (None: all).
    operations: frozenset[str] | None = None

    # --- variants of the live service --------------------------------------------------
    empty_result: EmptyResult = "element"
    pdf_content_type: str = "application/pdf"
    pdf_redirect: PdfRedirect = "none"
    # Print links stop working this many seconds after PrintInvoice (None: the sandbox's
    # own ``print_ttl_seconds``).
    pdf_expires_after: float | None = None
    untyped_lines: bool = False
    list_print: ListPrint = "merged"
    # Every answer sets a session cookie, as an ASP.NET site may (see ``Call.cookie``).
    set_cookie: bool = False
    # The PDF opens only within a session: a GET without the ``ASP.NET_SessionId`` cookie
    # is redirected to the same URL with one set, and then (still without it) answered
    # with an HTML sign-in page. A client keeping cookies gets the PDF; one that keeps
    # none (this product) never does.
    pdf_needs_cookie: bool = False
    unknown_customer_id: UnknownCustomerId = "empty"
    email_match: EmailMatch = "loose"
    check_order: tuple[Check, ...] = DEFAULT_CHECK_ORDER

    def applies_to(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

    def take_throttle(self, operation: str) -> bool:
        """Whether this call is one of the throttled ones (and count it off)."""
        if self.throttle <= 0 or not self.applies_to(operation):
            return False
        self.throttle -= 1
        return True

    def clear(self) -> None:
        """Back to a healthy service, keeping the configured latency."""
        latency = self.latency_ms
        fresh = Faults(latency_ms=latency)
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))


@dataclass(frozen=True, slots=True)
class Call:
    """One request the sandbox received. Never holds a password."""

    operation: str
    username: str
    at: float  # time.monotonic() when the request arrived
    peer: str = ""
    cookie: bool = False  # whether the request carried a Cookie header
