"""The bot's mail door under hostile and heavy SMTP sessions, over real loopback sockets.

Hundreds of idle connections do not keep a real client out; a client that stalls in the
middle of DATA is cut off at the listener's timeout with nothing half-spooled; commands
pipelined ahead of STARTTLS never run inside the TLS session (RFC 3207 section 4.2); a
message parked as poison does not stop a later copy of it from being answered, once.

Already covered elsewhere and not repeated here: relaying refused at RCPT
(test_listener), the same Message-ID sent twice answered once and a poison message parked
after three attempts while the queue behind it flows (test_bot_e2e, test_bot_worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from unittest import mock

from bot.listener import server_tls_context
from bot.mailparse import Request
from bot.reading import MailReader
from tests.support.bot import ACME, Rig, request_mail
from tests.support.listener import REQUEST, OpenRaw, StartBot, deliver

IDLE_CONNECTIONS = 500


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    """One SMTP reply, all its lines, within a bound."""
    lines: list[bytes] = []
    async with asyncio.timeout(30):
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError(f"connection closed after {lines!r}")
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), lines


async def open_idle(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` sessions that got their greeting and then say nothing."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            opened.append((reader, writer))
            code, _ = await read_reply(reader)
            assert code == 220
    except BaseException:
        await close_all(opened)
        raise
    return opened


async def close_all(streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in streams:
        writer.close()
    for _, writer in streams:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_hundreds_of_idle_sessions_do_not_keep_a_real_client_out(rig: Rig) -> None:
    idle = await open_idle(rig.service.port, IDLE_CONNECTIONS)
    try:
        await rig.send(request_mail(message_id="<through-the-crowd@client.example>"))
        [reply] = await rig.capture.wait_for(1)
        assert reply.rcpt_tos == (ACME,)
        assert reply.parsed()["In-Reply-To"] == "<through-the-crowd@client.example>"
        # None of the idle sessions was dropped to make room: each still gets an answer.
        for _, writer in idle:
            writer.write(b"QUIT\r\n")
        for reader, _ in idle:
            code, _ = await read_reply(reader)
            assert code == 221
    finally:
        await close_all(idle)
    assert len(rig.capture.messages) == 1


async def test_a_client_stalling_inside_data_is_cut_off_and_nothing_is_spooled(
    start_bot: StartBot, open_raw: OpenRaw
) -> None:
    bot = await start_bot(timeout=1.0)
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO slow.example\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 250
    assert (await client.send(b"RCPT TO:<invoices@biz.example>\r\n"))[0] == 250
    assert (await client.send(b"DATA\r\n"))[0] == 354
    client.writer.write(b"From: client@example.com\r\nSubject: half\r\n\r\nthe first half of")
    await client.writer.drain()

    # The client says nothing more; only the listener's timeout can end the session (the
    # bound here is for a listener that never hangs up).
    async with asyncio.timeout(60):
        rest = await client.reader.read()

    assert rest == b""  # cut off without a 250: the sender knows it was not accepted
    assert sum((await bot.spool.counts()).values()) == 0
    assert not bot.woken.is_set()
    # The listener is none the worse for it.
    _, data = await asyncio.to_thread(deliver, bot.port, [REQUEST])
    assert data is not None and data[0] == 250
    assert (await bot.spool.counts())["queued"] == 1


async def test_commands_pipelined_before_starttls_do_not_run_inside_tls(
    start_bot: StartBot, open_raw: OpenRaw, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    bot = await start_bot(tls_context=server_tls_context(str(cert), str(key)))
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO client.example.com\r\n"))[0] == 250
    # A man in the middle appends a command to the client's STARTTLS, in the same packet;
    # if the server kept it, its answer would arrive inside TLS as if the client had asked.
    injected = b"MAIL FROM:<attacker@evil.example>\r\nRSET\r\n"
    code, text = await client.send(b"STARTTLS\r\n" + injected)
    assert code == 220, text
    await client.writer.start_tls(
        ssl.create_default_context(cafile=str(cert)), server_hostname="localhost"
    )

    client.writer.write(b"EHLO client.example.com\r\nQUIT\r\n")
    await client.writer.drain()
    ehlo_code, ehlo = await read_reply(client.reader)
    quit_code, _ = await read_reply(client.reader)
    async with asyncio.timeout(30):
        after = await client.reader.read()

    # Exactly the two answers asked for inside TLS: the EHLO's (first) and the QUIT's.
    assert ehlo_code == 250 and ehlo[0].startswith(b"250-") and len(ehlo) > 1
    assert quit_code == 221
    assert after == b""
    assert sum((await bot.spool.counts()).values()) == 0


async def test_a_message_parked_as_poison_is_answered_once_when_sent_again(rig: Rig) -> None:
    message = request_mail(message_id="<poison-then-fixed@client.example>")

    async def broken(reader: MailReader, raw: bytes, envelope_sender: str | None) -> Request:
        raise RuntimeError("parser bug")

    with mock.patch.object(MailReader, "read", broken):
        await rig.send(message)
        settled = await rig.service.worker.wait_for(lambda s: any(x.state == "parked" for x in s))
    assert [s.state for s in settled] == ["retry", "retry", "parked"]
    assert rig.capture.messages == []

    # Fixed and redelivered: the parked copy got no reply, so this one is not a duplicate.
    await rig.send(message)
    [reply] = await rig.capture.wait_for(1)
    assert reply.parsed()["In-Reply-To"] == "<poison-then-fixed@client.example>"
    # A third copy is a duplicate of the one answered.
    await rig.send(message)
    settled = await rig.settle(5)
    assert [s.state for s in settled[3:]] == ["done", "done"]
    assert len(rig.capture.messages) == 1
