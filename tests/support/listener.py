"""The bot's SMTP listener on its own, with the real spool behind it, for listener tests.

:func:`listener_bots` starts listeners for given request addresses on loopback;
:func:`deliver` is one SMTP transaction with smtplib; :class:`RawClient` speaks SMTP
byte for byte, for what smtplib would never send.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from bot.listener import ListenerSettings, SMTPServer, accept_addresses, create_listener
from permalink.db import Database
from permalink.spool import Spool

REQUEST = "invoices@biz.example"
CLIENT = "client@example.com"
MESSAGE = (
    b"From: Client <client@example.com>\r\n"
    b"To: invoices@biz.example\r\n"
    b"Subject: send me my invoices\r\n"
    b"Message-ID: <req-1@example.com>\r\n"
    b"\r\n"
    b"Hello, please send me my invoices.\r\n"
    b".. a line that starts with a dot\r\n"
)


@dataclass
class Bot:
    server: SMTPServer
    spool: Spool
    woken: asyncio.Event

    @property
    def port(self) -> int:
        return self.server.port


StartBot = Callable[..., Awaitable[Bot]]


def deliver(
    port: int, rcpts: list[str], body: bytes = MESSAGE, *, lmtp: bool = False
) -> tuple[list[tuple[int, bytes]], tuple[int, bytes] | None]:
    """One SMTP transaction with smtplib; returns the RCPT replies and the DATA reply."""
    client = smtplib.LMTP("127.0.0.1", port) if lmtp else smtplib.SMTP("127.0.0.1", port)
    with client:
        client.ehlo("client.example.com")
        code, _ = client.mail(CLIENT)
        assert code == 250
        replies = [client.rcpt(rcpt) for rcpt in rcpts]
        if not any(code == 250 for code, _ in replies):
            return replies, None
        return replies, client.data(body)


class RawClient:
    """Speaks SMTP byte for byte, for what smtplib would never send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await client.reply())[0] == 220
        return client

    async def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while True:
                line = (await self.reader.readline()).decode()
                lines.append(line[4:].rstrip())
                if line[3:4] != "-":
                    return int(line[:3]), "\n".join(lines)

    async def send(self, data: bytes) -> tuple[int, str]:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


OpenRaw = Callable[[int], Awaitable[RawClient]]


@asynccontextmanager
async def listener_bots(database: Database) -> AsyncIterator[StartBot]:
    """Start listeners for request addresses (keyword arguments: ListenerSettings)."""
    servers: list[SMTPServer] = []

    async def factory(addresses: tuple[str, ...] = (REQUEST,), **overrides: Any) -> Bot:
        settings = replace(ListenerSettings(host="127.0.0.1", port=0), **overrides)
        spool = Spool(database)
        woken = asyncio.Event()
        accepts = accept_addresses(addresses, account="biz")
        server = create_listener(spool, accepts, settings, wake=woken.set)
        await server.start()
        servers.append(server)
        return Bot(server, spool, woken)

    try:
        yield factory
    finally:
        for server in servers:
            await server.close()


@asynccontextmanager
async def raw_clients() -> AsyncIterator[OpenRaw]:
    clients: list[RawClient] = []

    async def factory(port: int) -> RawClient:
        client = await RawClient.connect(port)
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            await client.close()


__all__ = [
    "CLIENT",
    "MESSAGE",
    "REQUEST",
    "Bot",
    "OpenRaw",
    "RawClient",
    "StartBot",
    "deliver",
    "listener_bots",
    "raw_clients",
]
