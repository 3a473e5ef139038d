"""Where invoice PDFs may be fetched from: the allow-list for the URL PrintInvoice returns.

PrintInvoice answers with a URL that the server then GETs itself, so that URL decides where
our server connects. It is fetched only over https, only from hosts on this list, and a
redirect may not leave the host it came from. Plain http is allowed only for loopback hosts
named on the list (the sandbox KashFlow of the demo and the tests).

An entry is a host name (``securedwebapp.com``: that host only) or a wildcard
(``*.kashflow.com``: any host below it, not the domain itself). The operator sets the list
with ``--pdf-hosts`` / ``KASHFLOW_PERMALINK_PDF_HOSTS`` as a comma-separated list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

#: KashFlow's own hosts: its API host and its web application's domain. Which of them the
#: live PrintInvoice URL uses is unpublished; ``kashflow-permalink probe`` shows it.
DEFAULT_PDF_HOSTS: Final = "securedwebapp.com,*.securedwebapp.com,kashflow.com,*.kashflow.com"

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _entry(text: str) -> str:
    entry = text.strip().lower().rstrip(".")
    if entry.startswith("[") and entry.endswith("]"):
        entry = entry[1:-1]  # an IPv6 address written as in a URL
    body = entry[2:] if entry.startswith("*.") else entry
    if not body or "/" in body or "@" in body or "*" in body or " " in body:
        raise ValueError(f"{text.strip()!r} is not a host name (write e.g. *.kashflow.com)")
    if ":" in body and not _is_ip(body):
        raise ValueError(f"{text.strip()!r}: write the host without a port or scheme")
    return entry


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PdfHosts:
    """A parsed allow-list; :meth:`refusal` says why a URL may not be fetched (or None)."""

    entries: tuple[str, ...]

    @classmethod
    def parse(cls, hosts: str | Iterable[str] | PdfHosts) -> PdfHosts:
        """From a comma-separated string or an iterable of entries; ValueError if malformed."""
        if isinstance(hosts, PdfHosts):
            return hosts
        parts = hosts.split(",") if isinstance(hosts, str) else list(hosts)
        entries = tuple(_entry(p) for p in parts if p.strip())
        if not entries:
            raise ValueError("the PDF host list is empty: name at least one host")
        return cls(entries)

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.entries:
            if entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return True
            elif host == entry:
                return True
        return False

    def refusal(self, url: str) -> str | None:
        """None if ``url`` may be fetched, else the reason in words (no path, no query:
        those may carry a document's key)."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return "not a URL"
        if parts.scheme not in ("https", "http") or not host:
            return "not an http(s) URL"
        if parts.username is not None or parts.password is not None:
            return "a URL with credentials in it"
        if not self.allows_host(host):
            return f"host {host} is not on the PDF host list"
        if parts.scheme == "http" and not is_loopback(host):
            return f"plain http to {host} (https is required except on loopback)"
        return None

    def __str__(self) -> str:
        return ",".join(self.entries)


def same_host(url: str, other: str) -> bool:
    """Whether a redirect from ``url`` to ``other`` stays on the same host."""
    try:
        return (urlsplit(url).hostname or "").lower() == (urlsplit(other).hostname or "").lower()
    except ValueError:
        return False
