"""A small authoritative DNS server on loopback, written with dnspython's message API.

Tests publish TXT records in :attr:`DnsServer.txt` (name → texts) and point the product's
resolver at :attr:`DnsServer.port`; every other question is answered NXDOMAIN.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer(asyncio.DatagramProtocol):
    """Answers TXT questions from :attr:`txt` over UDP."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.questions: list[str] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    def publish(self, name: str, *texts: str) -> None:
        self.txt[name.rstrip(".").lower()] = list(texts)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self._transport is not None
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.questions.append(name)
        texts = self.txt.get(name)
        if texts is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and texts:
            quoted = ['"' + text.replace('"', '\\"') + '"' for text in texts]
            response.answer.append(
                dns.rrset.from_text(
                    question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, *quoted
                )
            )
        self._transport.sendto(response.to_wire(), addr)


@asynccontextmanager
async def dns_server() -> AsyncIterator[DnsServer]:
    """A running :class:`DnsServer` on 127.0.0.1 (a free UDP port)."""
    loop = asyncio.get_running_loop()
    server = DnsServer()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    server.port = transport.get_extra_info("sockname")[1]
    try:
        yield server
    finally:
        transport.close()


__all__ = ["DnsServer", "dns_server"]
