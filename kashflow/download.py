"""Fetching the document a PrintInvoice URL points at, within the allow-list and a size cap.

The URL comes from KashFlow's reply, so it decides where this server connects: it must pass
:class:`~kashflow.pdfhosts.PdfHosts` and every redirect must stay on the host it came from
(and pass the list again: https may not become http). Redirects are followed here, one by
one, rather than by aiohttp, so each hop is checked before it is requested. The body is
read up to a cap. What came back is returned as it is (:class:`Download`); deciding whether
it is a usable PDF is the caller's business, and ``kashflow-permalink probe`` reports it.
Nothing here logs a URL's path or query: a document's key may be in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit

import aiohttp

from kashflow.errors import BadDocument, Unavailable
from kashflow.pdfhosts import PdfHosts, same_host
from kashflow.retry import retry_after_seconds

MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: Answers that mean "not now": retried, after Retry-After when given.
BUSY: Final = frozenset({429, 503})


class ReplyTooLarge(Exception):
    """The body is over the cap (by its Content-Length, or as it streamed in)."""


@dataclass(frozen=True, slots=True)
class Hop:
    """One answer on the way to the document: its status and where it came from."""

    status: int
    scheme: str
    host: str


@dataclass(frozen=True, slots=True)
class Download:
    status: int
    #: The whole Content-Type header (parameters included), "" if absent.
    content_type: str
    body: bytes
    #: Every answer in order, redirects first; the last is the one whose body this is.
    hops: tuple[Hop, ...]
    #: Names (never values) of the cookies the answers tried to set.
    cookies: tuple[str, ...] = ()

    @property
    def is_pdf(self) -> bool:
        # By its bytes: KashFlow's content type for the document is unpublished, and a
        # server may well say application/octet-stream or add parameters.
        return self.status == 200 and self.body.startswith(b"%PDF-")

    @property
    def redirected(self) -> bool:
        return len(self.hops) > 1


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise ReplyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ReplyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _hop(url: str, status: int) -> Hop:
    parts = urlsplit(url)
    return Hop(status, parts.scheme, (parts.hostname or "").lower())


async def download(
    http: aiohttp.ClientSession,
    url: str,
    hosts: PdfHosts,
    *,
    max_bytes: int,
    max_redirects: int = MAX_REDIRECTS,
) -> Download:
    """GET ``url`` as the rules above allow. Raises BadDocument for a URL, redirect or size
    the rules refuse, Unavailable for a failed connection, a timeout, or HTTP 429 / 503."""
    refused = hosts.refusal(url)
    if refused is not None:
        raise BadDocument(f"PrintInvoice URL refused: {refused}")
    hops: list[Hop] = []
    cookies: list[str] = []
    current = url
    try:
        while True:
            async with http.get(current, allow_redirects=False) as resp:
                hops.append(_hop(current, resp.status))
                cookies.extend(resp.cookies.keys())
                if resp.status in BUSY:
                    raise Unavailable(
                        f"HTTP {resp.status} for the PDF",
                        retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                    )
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    current = _next_hop(current, resp.headers["Location"], hosts, len(hops))
                    if len(hops) > max_redirects:
                        raise BadDocument(f"more than {max_redirects} redirects")
                    continue
                body = await read_capped(resp, max_bytes)
                return Download(
                    resp.status,
                    resp.headers.get("Content-Type", ""),
                    body,
                    tuple(hops),
                    tuple(cookies),
                )
    except ReplyTooLarge:
        raise BadDocument(f"the PDF is larger than {max_bytes:,} bytes") from None
    except TimeoutError as exc:
        raise Unavailable("timed out fetching the PDF") from exc
    except aiohttp.ClientError as exc:
        raise Unavailable(type(exc).__name__) from exc


def _next_hop(current: str, location: str, hosts: PdfHosts, hop: int) -> str:
    target = urljoin(current, location.strip())
    if not same_host(current, target):
        other = (urlsplit(target).hostname or "?").lower()
        raise BadDocument(f"redirect {hop} leads to another host ({other})")
    refused = hosts.refusal(target)
    if refused is not None:
        raise BadDocument(f"redirect {hop} refused: {refused}")
    return target
