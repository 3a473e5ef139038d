"""What keeps a permalink a secret: response headers, log redaction, and the token throttle key.

A permalink is a capability URL — whoever has it sees the invoices — so every response
tells browsers, caches and crawlers to keep it to themselves (no Referer, no caching, no
indexing, no framing, a strict Content-Security-Policy), and the access log writes
``/l/…`` where the token was. Query strings are never logged either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from permalink.activity import redact

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}

#: The Server header: the product, no library or version to fingerprint.
SERVER_NAME: Final = "kashflow-permalink"

#: What a link token is replaced with in anything written down.
REDACTED_TOKEN: Final = "…"  # noqa: S105 - a placeholder, not a secret

# Anything after /l/ up to the next slash is (or claims to be) a token.
_LINK_PATH = re.compile(r"/l/[^/?#]*")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: the capability-URL headers on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # aiohttp would announce its name and version (and Python's) to every visitor.
    response.headers["Server"] = SERVER_NAME


def redact_path(path: str) -> str:
    """``path`` fit for a log line: link tokens cut out, query string dropped.

    Anything else shaped like a token (a long run of letters and digits) is redacted
    too, so a token pasted into another route does not slip through.
    """
    path, sep, _query = path.partition("?")
    path = _LINK_PATH.sub(f"/l/{REDACTED_TOKEN}", path)
    # Segment by segment: the blob pattern would otherwise swallow the slashes too.
    cleaned = "/".join(redact(segment) for segment in path.split("/"))
    return cleaned + ("?" + REDACTED_TOKEN if sep else "")


def client_address(request: web.BaseRequest) -> str:
    """The peer address the throttle and the logs use.

    The socket's peer, not X-Forwarded-For: a header any client can set would let one
    client spread its failures over invented addresses.
    """
    return request.remote or "unknown"


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request — peer, method, redacted path, status, size, duration — and
    never a token, a query string, a cookie or a Referer."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.1fms',
            client_address(request),
            request.method,
            redact_path(request.path + ("?" if request.query_string else "")),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time * 1000.0,
        )


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "REDACTED_TOKEN",
    "SECURITY_HEADERS",
    "RedactingAccessLogger",
    "add_security_headers",
    "client_address",
    "redact_path",
]
