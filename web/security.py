"""What keeps a permalink a secret: response headers, log redaction, and who the client is.

A permalink is a capability URL — whoever has it sees the invoices — so every response
tells browsers, caches and crawlers to keep it to themselves (no Referer, no caching, no
indexing, no framing, a strict Content-Security-Policy), and the access log writes
``/l/…`` where the token was. Query strings are never logged either.

The client address the throttles, the sign-in lock and the logs use is the socket's peer,
unless that peer is one of the operator's trusted reverse proxies
(:class:`TrustedProxies`): only then is it read from ``X-Forwarded-For`` or ``Forwarded``.

One kind of response is framed: a :class:`MailPreview`, the HTML part of an email shown
inside a settings page exactly as the client will get it. It gets its own policy — the
inline styles mail needs, and nothing else: no script, no request, no form, a sandbox,
and framing by this site's own pages only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from permalink.activity import redact

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
#: The policy of a :class:`MailPreview`.
MAIL_PREVIEW_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'self'; base-uri 'none'; sandbox"
)

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}

#: The settings pages' policy; permalink pages keep ``no-referrer``.
SETTINGS_REFERRER_POLICY: Final = "same-origin"

#: The Server header: the product, no library or version to fingerprint.
SERVER_NAME: Final = "kashflow-permalink"

#: What a link token is replaced with in anything written down.
REDACTED_TOKEN: Final = "…"  # noqa: S105 - a placeholder, not a secret

# Anything after /l/ up to the next slash is (or claims to be) a token; a final ".json"
# (the link's JSON view) is kept, since a token never holds a dot.
_LINK_PATH = re.compile(r"/l/[^/?#]*?(?=(?:\.json)?(?:[/?#]|$))")


class MailPreview(web.Response):
    """An email's HTML part, to be shown in a frame of a settings page (see the module)."""

    def __init__(self, html: str) -> None:
        super().__init__(text=html, content_type="text/html")


def security_headers(path: str) -> dict[str, str]:
    """The headers every response to ``path`` carries, ``Server`` included."""
    headers = dict(SECURITY_HEADERS)
    if path == "/settings" or path.startswith("/settings/"):
        # The settings pages hold no capability in their URLs, and same-origin lets the
        # browser name our origin on its own form posts, so the CSRF check can refuse
        # "Origin: null" (a sandboxed frame or a data: page) there.
        headers["Referrer-Policy"] = SETTINGS_REFERRER_POLICY
    # aiohttp would announce its name and version (and Python's) to every visitor.
    headers["Server"] = SERVER_NAME
    return headers


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: the capability-URL headers on every response."""
    for name, value in security_headers(request.path).items():
        response.headers[name] = value
    if isinstance(response, MailPreview):
        response.headers["Content-Security-Policy"] = MAIL_PREVIEW_POLICY
        response.headers["X-Frame-Options"] = "SAMEORIGIN"


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


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The reverse proxies whose forwarding headers are believed (none by default).

    Behind a proxy every visitor has the proxy's address, so a throttle keyed on the
    socket's peer would let one client lock everyone out. Only a request whose peer is
    one of these networks has its client taken from the headers: the right-most address
    of ``X-Forwarded-For`` that is not itself a trusted proxy (each proxy appends the
    address it saw, so everything left of that may be the client's invention), else the
    same from ``Forwarded``'s ``for=`` (RFC 7239). Anyone else's headers are ignored.
    """

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> TrustedProxies:
        """From a comma list (or items) of addresses and CIDRs; ValueError names a bad one."""
        items = entries.split(",") if isinstance(entries, str) else list(entries)
        networks: list[IPNetwork] = []
        for item in (entry.strip() for entry in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {item!r} is not an IP address or a CIDR such as 10.0.0.0/8"
                ) from None
        return cls(tuple(networks))

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, headers: Mapping[str, str] | None) -> str:
        """The client's address for a request from ``peer`` carrying ``headers``."""
        if not self.networks or headers is None or not self.trusts(peer):
            return peer or "unknown"
        chain = _forwarded_for(headers)
        # Right to left: the first hop our proxies did not add is the client they saw.
        for hop in reversed(chain):
            ip = _ip(hop)
            if ip is None:
                break  # garbage where an address should be: the proxy did not write it
            if not self.trusts(str(ip)):
                return str(ip)
        else:
            if chain and (first := _ip(chain[0])) is not None:
                return str(first)  # every hop is a trusted proxy: the first is the origin
        return peer or "unknown"


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    value = text.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:4711" or "[2001:db8::1]"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "192.0.2.1:4711"
        value = value.partition(":")[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _forwarded_for(headers: Mapping[str, str]) -> list[str]:
    getall = getattr(headers, "getall", None)

    def values(name: str) -> list[str]:
        if getall is not None:
            return list(getall(name, []))
        value = headers.get(name)
        return [value] if value else []

    xff = [hop.strip() for value in values("X-Forwarded-For") for hop in value.split(",")]
    if any(xff):
        return xff
    hops: list[str] = []
    for value in values("Forwarded"):
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, found = pair.strip().partition("=")
                if name.strip().lower() == "for":
                    hops.append(found.strip())
    return hops


#: Where :func:`client_address` finds the trusted proxies of an application.
TRUSTED_PROXIES: Final = web.AppKey("trusted_proxies", TrustedProxies)


def client_address(request: web.BaseRequest) -> str:
    """The client address the throttles, the sign-in lock and the logs use.

    The socket's peer, unless that peer is a trusted proxy (:class:`TrustedProxies`): a
    header any client can set would otherwise let one client spread its failures over
    invented addresses.
    """
    proxies: TrustedProxies | None = None
    if isinstance(request, web.Request):
        try:
            proxies = request.app.get(TRUSTED_PROXIES)
        except (AssertionError, AttributeError, RuntimeError):
            proxies = None  # answered before routing (a malformed request): no app yet
    if proxies is None:
        return request.remote or "unknown"
    return proxies.client(request.remote, request.headers)


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
    "MAIL_PREVIEW_POLICY",
    "REDACTED_TOKEN",
    "SECURITY_HEADERS",
    "SETTINGS_REFERRER_POLICY",
    "TRUSTED_PROXIES",
    "MailPreview",
    "RedactingAccessLogger",
    "TrustedProxies",
    "add_security_headers",
    "client_address",
    "redact_path",
    "security_headers",
]
