"""The bot's SMTP/LMTP listener over real loopback sockets, with the real spool behind it."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path
from unittest import mock

import pytest

from bot.listener import ListenerSettings, server_tls_context
from permalink.db import StoreUnavailable
from permalink.spool import Spool
from tests.support.full_disk import full_disk_listener
from tests.support.listener import CLIENT, MESSAGE, REQUEST, OpenRaw, StartBot, deliver


async def test_accepted_message_is_spooled_before_250_and_wakes_worker(start_bot: StartBot) -> None:
    bot = await start_bot()
    replies, data = await asyncio.to_thread(deliver, bot.port, [REQUEST])
    assert replies == [(250, b"2.1.5 OK")]
    assert data is not None
    code, text = data
    assert code == 250 and text.startswith(b"2.0.0 Queued as ")
    spool_id = int(text.rsplit(b" ", 1)[1])
    stored = await bot.spool.get(spool_id)
    assert stored is not None
    # smtplib dot-stuffs the line that starts with a dot; the spool has the message as written.
    assert stored.raw == MESSAGE
    assert (stored.mail_from, stored.rcpt_tos) == (CLIENT, (REQUEST,))
    # Filed under the account the address belonged to when it was accepted.
    assert stored.account == "biz"
    assert stored.message_id == "<req-1@example.com>"
    assert stored.peer.startswith("127.0.0.1:")
    assert bot.woken.is_set()


async def test_request_address_is_matched_case_insensitively(start_bot: StartBot) -> None:
    bot = await start_bot()
    replies, data = await asyncio.to_thread(deliver, bot.port, ["Invoices@BIZ.example"])
    assert replies[0][0] == 250 and data is not None and data[0] == 250


async def test_other_recipients_are_refused_so_nothing_is_relayed(start_bot: StartBot) -> None:
    bot = await start_bot()
    replies, data = await asyncio.to_thread(
        deliver, bot.port, ["someone@elsewhere.example", "postmaster@biz.example"]
    )
    assert [code for code, _ in replies] == [550, 550]
    assert replies[0][1].startswith(b"5.1.1")
    assert data is None
    assert (await bot.spool.counts())["queued"] == 0


async def test_oversize_message_gets_552_and_is_not_spooled(start_bot: StartBot) -> None:
    bot = await start_bot(max_message_size=2048)
    big = MESSAGE + (b"y" * 70 + b"\r\n") * 100
    _, data = await asyncio.to_thread(deliver, bot.port, [REQUEST], big)
    assert data is not None and data[0] == 552
    assert (await bot.spool.counts())["queued"] == 0
    assert not bot.woken.is_set()


async def test_too_many_recipients_get_452(start_bot: StartBot) -> None:
    addresses = ("a@biz.example", "b@biz.example", "c@biz.example")
    bot = await start_bot(addresses, max_recipients=2)
    replies, data = await asyncio.to_thread(deliver, bot.port, list(addresses))
    assert [code for code, _ in replies] == [250, 250, 452]
    assert data is not None and data[0] == 250
    (entry,) = await bot.spool.list()
    assert entry.rcpt_tos == addresses[:2]


async def test_command_line_longer_than_the_limit_is_refused(
    start_bot: StartBot, open_raw: OpenRaw
) -> None:
    bot = await start_bot(max_command_length=600)
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO client.example.com\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 250
    long_rcpt = b"RCPT TO:<" + b"a" * 650 + b"@biz.example>\r\n"
    code, text = await client.send(long_rcpt)
    assert (code, text) == (500, "Command line too long")
    # Under the configured limit the same command is parsed (and refused as a recipient).
    assert (await client.send(b"RCPT TO:<" + b"a" * 500 + b"@biz.example>\r\n"))[0] == 550


async def test_command_lines_over_512_octets_are_refused_at_the_default_limit(
    start_bot: StartBot, open_raw: OpenRaw
) -> None:
    bot = await start_bot()  # ListenerSettings as shipped
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO client.example.com\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 250

    def rcpt(octets: int) -> bytes:
        """A RCPT command line of exactly ``octets`` octets, CRLF included."""
        local = b"a" * (octets - len(b"RCPT TO:<@biz.example>\r\n"))
        line = b"RCPT TO:<" + local + b"@biz.example>\r\n"
        assert len(line) == octets
        return line

    # RFC 5321 section 4.5.3.1.4: 512 octets, CRLF included, must be read as a command
    # (and this one names no request address).
    assert (await client.send(rcpt(512)))[0] == 550
    # One octet more is too long: a limit of 513 or 514 would let these through.
    assert await client.send(rcpt(513)) == (500, "Command line too long")
    assert await client.send(rcpt(514)) == (500, "Command line too long")
    assert await client.send(rcpt(515)) == (500, "Command line too long")
    assert await client.send(rcpt(4096)) == (500, "Command line too long")
    # The session goes on.
    assert (await client.send(b"RCPT TO:<invoices@biz.example>\r\n"))[0] == 250


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("spool broke"), b"451 4.3.0"),
        (StoreUnavailable("the state database failed"), b"451 4.3.0"),
    ],
)
async def test_spool_failure_is_a_temporary_refusal(
    start_bot: StartBot, error: Exception, expected: bytes
) -> None:
    bot = await start_bot()
    with mock.patch.object(Spool, "enqueue", side_effect=error):
        _, data = await asyncio.to_thread(deliver, bot.port, [REQUEST])
    assert data is not None
    assert (b"%d %s" % data).startswith(expected)
    assert not bot.woken.is_set()


async def test_a_full_disk_defers_the_message_until_there_is_room(tmp_path: Path) -> None:
    # The state on a tmpfs filled to its last byte (tests/support/full_disk.py): SQLite meets
    # a real ENOSPC, not a mocked one.
    message = MESSAGE + b"A full month of statements follows.\r\n" + (b"x" * 76 + b"\r\n") * 8000
    async with full_disk_listener(tmp_path) as disk:
        _, refused = await asyncio.to_thread(deliver, disk.port, [REQUEST], message)
        assert refused is not None
        # 452: insufficient storage, try again later; the client keeps the message.
        assert refused[0] == 452 and refused[1].startswith(b"4.3.1")
        assert sum((await disk.counts()).values()) == 0

        assert await disk.ask("free") == "freed"
        _, accepted = await asyncio.to_thread(deliver, disk.port, [REQUEST], message)
        assert accepted is not None and accepted[0] == 250
        assert (await disk.counts())["queued"] == 1


async def test_lmtp_mode_answers_data_once_per_recipient(
    start_bot: StartBot, open_raw: OpenRaw
) -> None:
    addresses = ("invoices@biz.example", "billing@biz.example")
    bot = await start_bot(addresses, lmtp=True)
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO mta.example\r\n"))[0] == 500
    assert (await client.send(b"LHLO mta.example\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 250
    for address in addresses:
        assert (await client.send(b"RCPT TO:<%s>\r\n" % address.encode()))[0] == 250
    assert (await client.send(b"DATA\r\n"))[0] == 354
    first = await client.send(MESSAGE + b".\r\n")
    second = await client.reply()
    assert first == second
    assert first[0] == 250 and first[1].startswith("2.0.0 Queued as ")
    (entry,) = await bot.spool.list()
    assert entry.rcpt_tos == addresses


async def test_lmtp_mode_works_with_smtplib(start_bot: StartBot) -> None:
    bot = await start_bot(lmtp=True)
    _, data = await asyncio.to_thread(deliver, bot.port, [REQUEST], lmtp=True)
    assert data is not None and data[0] == 250
    assert (await bot.spool.counts())["queued"] == 1


def deliver_over_tls(port: int, cafile: Path) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(cafile))
    with smtplib.SMTP("localhost", port) as client:
        client.ehlo("client.example.com")
        assert client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo("client.example.com")
        client.mail(CLIENT)
        client.rcpt(REQUEST)
        return client.data(MESSAGE)


async def test_starttls_with_configured_certificate(
    start_bot: StartBot, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    bot = await start_bot(
        tls_context=server_tls_context(str(cert), str(key)), require_starttls=True
    )
    code, _ = await asyncio.to_thread(deliver_over_tls, bot.port, cert)
    assert code == 250
    (entry,) = await bot.spool.list()
    assert entry.message_id == "<req-1@example.com>"


async def test_require_starttls_refuses_plain_sessions(
    start_bot: StartBot, certificate: tuple[Path, Path], open_raw: OpenRaw
) -> None:
    cert, key = certificate
    bot = await start_bot(
        tls_context=server_tls_context(str(cert), str(key)), require_starttls=True
    )
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO client.example.com\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 530


def test_require_starttls_without_certificate_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="require_starttls"):
        ListenerSettings(require_starttls=True)


@pytest.mark.parametrize("smuggled_end", [b"\n.\n", b"\r.\r\n", b"\n.\r\n", b"\r\n.\n"])
async def test_bare_line_endings_cannot_smuggle_a_second_message(
    start_bot: StartBot, smuggled_end: bytes, open_raw: OpenRaw
) -> None:
    bot = await start_bot()
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO attacker.example\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 250
    assert (await client.send(b"RCPT TO:<invoices@biz.example>\r\n"))[0] == 250
    assert (await client.send(b"DATA\r\n"))[0] == 354
    smuggled = (
        b"MAIL FROM:<ceo@biz.example>\r\n"
        b"RCPT TO:<invoices@biz.example>\r\n"
        b"DATA\r\n"
        b"From: ceo@biz.example\r\n\r\nforged\r\n"
    )
    code, text = await client.send(
        b"Subject: innocent\r\n\r\nhello" + smuggled_end + smuggled + b".\r\n"
    )
    assert code == 250 and text.startswith("2.0.0 Queued as ")
    assert (await client.send(b"QUIT\r\n"))[0] == 221
    (entry,) = await bot.spool.list(with_raw=True)
    stored = await bot.spool.get(entry.id)
    assert stored is not None
    # The would-be second transaction is just text inside the one message that was accepted.
    assert smuggled in stored.raw
    assert stored.mail_from == CLIENT


async def test_stray_8bit_bytes_in_envelope_and_headers_are_still_accepted(
    start_bot: StartBot, open_raw: OpenRaw
) -> None:
    bot = await start_bot()
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO client.example.com\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<cl\xffient@example.com>\r\n"))[0] == 250
    assert (await client.send(b"RCPT TO:<invoices@biz.example>\r\n"))[0] == 250
    assert (await client.send(b"DATA\r\n"))[0] == 354
    raw = b"Message-ID: <caf\xc3\xa9\xff@example.com>\r\nSubject: \xe9t\xe9\r\n\r\nbody\r\n"
    assert (await client.send(raw + b".\r\n"))[0] == 250
    (entry,) = await bot.spool.list(with_raw=True)
    assert entry.mail_from == "cl\ufffdient@example.com"
    assert entry.message_id == "<caf\u00e9\ufffd@example.com>"
    stored = await bot.spool.get(entry.id)
    assert stored is not None and stored.raw == raw


async def test_closing_the_listener_drops_open_sessions_without_acknowledging(
    start_bot: StartBot, open_raw: OpenRaw
) -> None:
    bot = await start_bot()
    client = await open_raw(bot.port)
    assert (await client.send(b"EHLO client.example.com\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<client@example.com>\r\n"))[0] == 250
    await bot.server.close()
    async with asyncio.timeout(30):
        assert await client.reader.read() == b""
    assert (await bot.spool.counts())["queued"] == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", bot.port)
