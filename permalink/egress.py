"""Where the product may open an SMTP connection: the relay address policy.

An account's relay is typed on the settings page by whoever signed in, and the "test
email" button connects to it at once, so without a policy the server would connect
wherever a stranger says: its own loopback services, a cloud metadata address, the
office's internal mail server that trusts anything from inside. The rules:

* a relay the operator allowed (``--allow-relay HOST[:PORT]``, :class:`RelayAllowList`)
  is reached wherever it is;
* any other relay must be on a mail port (:data:`SUBMISSION_PORTS`), and every address its
  name resolves to must be a public unicast address: never loopback, link-local, private,
  shared (CGNAT), multicast, unspecified or reserved, with IPv4-mapped IPv6 judged as the
  IPv4 address it maps;
* the name is resolved once and the connection goes to the address that was checked
  (:func:`pinned_addresses`), so a DNS answer that changes between check and connect
  (rebinding) cannot send it elsewhere.

A refusal is :class:`RelayNotAllowed`, whose text says what to change without echoing
anything the far side said.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final

#: SMTP (25), submission over TLS (465), submission (587), and the common alternative.
SUBMISSION_PORTS: Final = frozenset({25, 465, 587, 2525})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RelayNotAllowed(ValueError):
    """The relay is somewhere this server does not connect to; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class RelayAllowList:
    """Relays the operator allows outside the rules: ``(host, port or None for any)``."""

    entries: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> RelayAllowList:
        """From ``"HOST[:PORT], [V6]:PORT, …"``; ValueError names an entry that is wrong."""
        entries: list[tuple[str, int | None]] = []
        for raw in (item.strip() for item in text.split(",")):
            if not raw:
                continue
            host, port = _split_host_port(raw)
            if not host or (port is not None and not 0 < port < 65536):
                raise ValueError(f"allowed relay {raw!r} is not HOST or HOST:PORT")
            entries.append((_normal_host(host), port))
        return cls(tuple(entries))

    def allows(self, host: str, port: int) -> bool:
        wanted = _normal_host(host)
        return any(h == wanted and p in (None, port) for h, p in self.entries)


def _split_host_port(raw: str) -> tuple[str, int | None]:
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif raw.count(":") == 1:
        host, _, port = raw.partition(":")
    else:
        host, port = raw, ""  # a bare name, IPv4 address or unbracketed IPv6 address
    if port and not port.isdigit():
        raise ValueError(f"allowed relay {raw!r} has a port that is not a number")
    return host.strip(), int(port) if port else None


def _normal_host(host: str) -> str:
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def forbidden(address: IPAddress) -> bool:
    """True for any address that is not a public unicast one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


NOT_PUBLIC: Final = (
    "the relay {host} is on a local or private network; use your mail provider's public "
    "relay (ask the operator of this server if an internal relay must be allowed)"
)
WRONG_PORT: Final = "port {port} is not a mail port; relays listen on 587 (or 465, 25, 2525)"
NOT_FOUND: Final = "the relay host {host} could not be found"


async def pinned_addresses(host: str, port: int, allow: RelayAllowList) -> tuple[str, ...]:
    """The addresses to connect to for ``host:port``, each checked against the rules.

    Raises :class:`RelayNotAllowed` with a sentence for the settings page.
    """
    allowed = allow.allows(host, port)
    if not allowed and port not in SUBMISSION_PORTS:
        raise RelayNotAllowed(WRONG_PORT.format(port=port))
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError):
        raise RelayNotAllowed(NOT_FOUND.format(host=host)) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        try:
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
        except ValueError:
            continue
    if not addresses:
        raise RelayNotAllowed(NOT_FOUND.format(host=host))
    # Every answer is judged, not just the first: a name with one public and one private
    # address would otherwise reach the private one on a later try.
    if not allowed and any(forbidden(address) for address in addresses):
        raise RelayNotAllowed(NOT_PUBLIC.format(host=host))
    return tuple(dict.fromkeys(str(address) for address in addresses))


async def connect(addresses: tuple[str, ...], port: int, timeout: float) -> socket.socket:  # noqa: ASYNC109
    """A TCP socket connected to the first of ``addresses`` that answers (no lookup)."""
    failure: OSError | TimeoutError = OSError("no address to connect to")
    async with asyncio.timeout(timeout):
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (address, port))
            except OSError as error:
                sock.close()
                failure = error
                continue
            except BaseException:
                sock.close()
                raise
            return sock
    raise failure


__all__ = [
    "SUBMISSION_PORTS",
    "RelayAllowList",
    "RelayNotAllowed",
    "connect",
    "forbidden",
    "pinned_addresses",
]
