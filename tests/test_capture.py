"""The capturing SMTP server: one readable .eml per message, waiting without polling."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from bot.capture import CaptureServer, Credentials


def message(n: int) -> bytes:
    return (
        f"From: Biz Ltd <invoices@biz.example>\r\n"
        f"To: client{n}@example.com\r\n"
        f"Subject: Your invoices ({n})\r\n"
        f"Message-ID: <reply-{n}@biz.example>\r\n"
        f"\r\n"
        f"Reply number {n}.\r\n"
    ).encode()


def submit(port: int, n: int) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        return client.sendmail("bot@biz.example", [f"client{n}@example.com"], message(n))


@pytest.fixture
async def capture(tmp_path: Path) -> AsyncIterator[CaptureServer]:
    async with CaptureServer(tmp_path / "outbox") as server:
        yield server


async def test_each_message_becomes_one_readable_eml_in_arrival_order(
    capture: CaptureServer,
) -> None:
    for n in range(3):
        assert await asyncio.to_thread(submit, capture.port, n) == {}
    captured = await capture.wait_for(3)
    files = sorted(capture.outbox.iterdir())
    assert [path.name for path in files] == [c.path.name for c in captured]
    assert all(path.suffix == ".eml" for path in files)
    for n, path in enumerate(files):
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert parsed["Subject"] == f"Your invoices ({n})"
        assert parsed["Return-Path"] == "<bot@biz.example>"
        assert parsed["X-Original-To"] == f"client{n}@example.com"
        assert parsed.get_content().strip() == f"Reply number {n}."
    assert captured[0].raw == message(0)


async def test_wait_for_wakes_on_arrival_and_times_out_with_a_count(
    capture: CaptureServer,
) -> None:
    waiter = asyncio.create_task(capture.wait_for(1))
    await asyncio.to_thread(submit, capture.port, 1)
    assert [c.rcpt_tos for c in await waiter] == [("client1@example.com",)]
    with pytest.raises(TimeoutError, match="1 of 2 messages"):
        await capture.wait_for(2, timeout=0.05)


async def test_refusal_can_be_switched_on_and_off(capture: CaptureServer) -> None:
    capture.fail_with = (451, "4.3.0 Try again later")
    with pytest.raises(smtplib.SMTPDataError) as caught:
        await asyncio.to_thread(submit, capture.port, 1)
    assert caught.value.smtp_code == 451
    assert list(capture.outbox.iterdir()) == []
    capture.fail_with = None
    await asyncio.to_thread(submit, capture.port, 2)
    assert len(await capture.wait_for(1)) == 1


async def test_down_then_up_on_the_same_port(capture: CaptureServer) -> None:
    port = capture.port
    await capture.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(submit, port, 1)
    await capture.start()
    assert capture.port == port
    await asyncio.to_thread(submit, port, 2)
    assert len(await capture.wait_for(1)) == 1


def test_auth_without_tls_is_refused_as_configuration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="STARTTLS"):
        CaptureServer(tmp_path, credentials=Credentials("bot", "pw"))
