"""Sending replies through a relay: the capture server stands in for it over loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bot.capture import CaptureServer, Credentials, self_signed_certificate
from bot.listener import server_tls_context
from permalink.egress import RelayAllowList
from permalink.relay import PermanentFailure, Relay, TemporaryFailure, backoff, send

CLIENT = "client@example.com"
SECRET = "correct horse battery staple"
#: The capture relay listens on loopback, which only an operator's allow-list lets through.
LOOPBACK = RelayAllowList.parse("127.0.0.1, localhost")

StartCapture = Callable[..., Awaitable[CaptureServer]]


@pytest.fixture
async def start_capture(tmp_path: Path) -> AsyncIterator[StartCapture]:
    started: list[CaptureServer] = []

    async def factory(**options: Any) -> CaptureServer:
        capture = CaptureServer(tmp_path / "outbox", **options)
        await capture.start()
        started.append(capture)
        return capture

    yield factory
    for capture in started:
        await capture.close()


def reply(to: str = CLIENT) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Biz Ltd <invoices@biz.example>"
    message["To"] = to
    message["Subject"] = "Your invoices"
    message["Message-ID"] = "<reply-1@biz.example>"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("Here are your invoices.")
    return message


def plain(capture: CaptureServer, **options: Any) -> Relay:
    return Relay(host="127.0.0.1", port=capture.port, security="none", **options)


async def test_reply_reaches_the_relay_for_the_given_recipient_only(
    start_capture: StartCapture,
) -> None:
    capture = await start_capture()
    message = reply(to="Someone Else <forged@attacker.example>")
    message["Bcc"] = "another@attacker.example"
    await send(plain(capture), message, recipients=[CLIENT], sender="", allow=LOOPBACK)
    (captured,) = await capture.wait_for(1)
    assert captured.rcpt_tos == (CLIENT,)
    assert captured.mail_from == "<>"
    parsed = captured.parsed()
    assert parsed["Message-ID"] == "<reply-1@biz.example>"
    assert parsed["Bcc"] is None
    assert parsed.get_content().strip() == "Here are your invoices."


async def test_451_is_a_temporary_failure_with_the_relay_text(
    start_capture: StartCapture,
) -> None:
    capture = await start_capture(fail_with=(451, "4.7.1 Greylisted, try again later"))
    with pytest.raises(TemporaryFailure) as caught:
        await send(plain(capture), reply(), recipients=[CLIENT], sender="", allow=LOOPBACK)
    assert caught.value.code == 451
    assert caught.value.stage == "data"
    assert "Greylisted" in str(caught.value)
    assert capture.messages == []


@pytest.mark.parametrize(("stage", "expected"), [("RCPT", "recipient"), ("MAIL", "sender")])
async def test_550_is_a_permanent_failure(
    start_capture: StartCapture, stage: str, expected: str
) -> None:
    capture = await start_capture(fail_with=(550, "5.7.1 Relaying denied"), fail_at=stage)
    with pytest.raises(PermanentFailure) as caught:
        await send(
            plain(capture), reply(), recipients=[CLIENT], sender="bot@biz.example", allow=LOOPBACK
        )
    assert (caught.value.code, caught.value.stage) == (550, expected)
    assert "Relaying denied" in str(caught.value)


async def test_relay_down_is_a_temporary_failure_and_recovers(
    start_capture: StartCapture,
) -> None:
    capture = await start_capture()
    relay = plain(capture)
    await capture.close()
    with pytest.raises(TemporaryFailure) as caught:
        await send(relay, reply(), recipients=[CLIENT], sender="", allow=LOOPBACK)
    assert caught.value.stage == "connect"
    await capture.start()
    await send(relay, reply(), recipients=[CLIENT], sender="", allow=LOOPBACK)
    assert len(await capture.wait_for(1)) == 1


async def test_relay_that_never_answers_is_a_temporary_failure() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        relay = Relay(host="127.0.0.1", port=port, security="none", timeout=0.3)
        with pytest.raises(TemporaryFailure, match="in time"):
            await send(relay, reply(), recipients=[CLIENT], sender="", allow=LOOPBACK)
    finally:
        server.close()
        for writer in accepted:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
    assert len(accepted) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


async def test_starttls_and_auth_with_the_configured_credentials(
    start_capture: StartCapture, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    capture = await start_capture(
        tls_context=server_tls_context(str(cert), str(key)),
        credentials=Credentials("bot", SECRET),
    )
    relay = Relay(
        host="localhost",
        port=capture.port,
        security="starttls",
        username="bot",
        password=SECRET,
        ca_file=str(cert),
    )
    await send(relay, reply(), recipients=[CLIENT], sender="bot@biz.example", allow=LOOPBACK)
    (captured,) = await capture.wait_for(1)
    assert captured.rcpt_tos == (CLIENT,)

    wrong = Relay(
        host="localhost",
        port=capture.port,
        security="starttls",
        username="bot",
        password="not " + SECRET,
        ca_file=str(cert),
    )
    with pytest.raises(PermanentFailure) as caught:
        await send(wrong, reply(), recipients=[CLIENT], sender="bot@biz.example", allow=LOOPBACK)
    assert (caught.value.code, caught.value.stage) == (535, "auth")
    assert SECRET not in str(caught.value) and SECRET not in repr(wrong)


async def test_relay_demanding_starttls_is_reported_as_a_settings_problem(
    start_capture: StartCapture, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    capture = await start_capture(
        tls_context=server_tls_context(str(cert), str(key)),
        credentials=Credentials("bot", SECRET),
    )
    with pytest.raises(PermanentFailure) as caught:
        await send(plain(capture), reply(), recipients=[CLIENT], sender="", allow=LOOPBACK)
    assert (caught.value.code, caught.value.stage) == (530, "auth")
    assert "STARTTLS" in str(caught.value)


async def test_untrusted_certificate_is_a_temporary_failure(
    start_capture: StartCapture, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    capture = await start_capture(tls_context=server_tls_context(str(cert), str(key)))
    relay = Relay(host="localhost", port=capture.port, security="starttls")
    with pytest.raises(TemporaryFailure) as caught:
        await send(relay, reply(), recipients=[CLIENT], sender="", allow=LOOPBACK)
    assert caught.value.stage == "connect"
    assert capture.messages == []


def test_relay_settings_are_checked_and_keep_the_password_out_of_repr() -> None:
    relay = Relay(host="smtp.example.com", username="bot", password=SECRET)
    assert SECRET not in repr(relay)
    with pytest.raises(ValueError, match="security"):
        Relay(host="smtp.example.com", security="tls")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        Relay(host="smtp.example.com", username="bot")


def test_backoff_doubles_from_30_seconds_to_an_hour_with_jitter() -> None:
    rng = random.Random(7)
    waits = [backoff(attempt, rng=rng) for attempt in range(1, 12)]
    steps = [30.0 * 2 ** (attempt - 1) for attempt in range(1, 12)]
    for wait, step in zip(waits, steps, strict=True):
        assert 0.75 * min(step, 3600) <= wait <= min(step, 3600)
    assert backoff(10_000, rng=rng) <= 3600
    assert len({backoff(3) for _ in range(20)}) > 1
