"""What can go wrong on purpose: the sandbox's fault switches and its record of calls.

Every switch can be flipped while the sandbox runs; ``operations`` narrows the transport
faults (hang, reset, HTTP 500, malformed XML) and the random errors to some operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kashflow.sandbox.texts import STATUS_TEXTS

BadPdf = Literal["html", "404"]
NotFoundVariant = Literal["no", "zeroed"]

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
    # Limit the transport faults and random errors to these operations (None: all).
    operations: frozenset[str] | None = None

    def applies_to(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

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
