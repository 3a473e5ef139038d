"""Requests too broken to reach the application, over a raw socket: our answer, no echo,
no token in any log.

aiohttp answers a request it cannot parse itself, before routing and middlewares. Served
as production serves the app (``web.app.runner``), such a request must get a plain 400
with the product's own headers (no ``Server: … aiohttp``, no echo of what was sent) and
leave nothing of the token it carried in any log record, with every logger at DEBUG.
The last test runs ``serve --role web -v`` as a real process and reads its log file.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support import WebRig, web_rig
from tests.support.logs import assert_no_secret, every_logger_at_debug, everything_logged
from tests.support.processes import ServeProcess, prepare_state, sandbox_process
from web.app import runner
from web.security import SECURITY_HEADERS, SERVER_NAME


@dataclass
class Served:
    rig: WebRig
    port: int


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with web_rig(tmp_path) as rig:
        web_runner = runner(rig.app)
        await web_runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(web_runner, sock)
        await site.start()
        try:
            yield Served(rig, sock.getsockname()[1])
        finally:
            await web_runner.cleanup()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def exchange(port: int, raw: bytes) -> list[Answer]:
    """Send ``raw`` as it is and read every answer, up to the server closing the
    connection (which it must do after a request it could not read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    return parse(data)


def parse(data: bytes) -> list[Answer]:
    """The HTTP answers in ``data``, one after another."""
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", len(rest)))
        answers.append(Answer(int(status_line.split()[1]), headers, rest[:size]))
        data = rest[size:]
    return answers


def malformed(token: str) -> dict[str, bytes]:
    """Each way of breaking a request, with the token somewhere in it."""
    return {
        "bare LF in the request line": f"GET /l/{token} HTTP/1.1\nHost: x\n\n".encode(),
        "bare LF ending a header": f"GET /l/{token} HTTP/1.1\r\nHost: x\nX: y\r\n\r\n".encode(),
        "bare CR": f"GET /l/{token} HTTP/1.1\rHost: x\r\n\r\n".encode(),
        "request line over 8190 bytes": (
            f"GET /l/{token}/{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        ),
        "header name with a space": (
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: /l/{token}\r\n\r\n".encode()
        ),
        "control character in a header": (
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Link: /l/{token}\x01\r\n\r\n".encode()
        ),
        "header over 8190 bytes": (
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nReferer: https://x/l/{token}"
            f"{'b' * 9000}\r\n\r\n".encode()
        ),
        "bad method": f"G\x01T /l/{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + token.encode(),
        "pipelined behind a good request": (
            f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /l/{token} HTTP/1.1\nHost: x\n\n"
        ).encode(),
    }


def assert_our_answer(answer: Answer, token: str, case: str) -> None:
    assert answer.status == 400, case
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name.lower()) == value, (case, name)
    assert answer.headers["server"] == SERVER_NAME, case
    assert b"could not be read" in answer.body, case
    body = answer.body.decode("latin-1")
    assert_no_secret(body, (), [token])
    for echo in ("HTTP/1.1", "Host", "GET", "Header", "Referer", "/l/"):
        assert echo not in body, (case, echo)


async def test_malformed_requests_get_our_answer_and_log_no_token(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    token = served.rig.mint("IVY01")
    with every_logger_at_debug(caplog):
        for case, raw in malformed(token).items():
            # One answer: a parse error in a packet voids the requests it carried.
            [answer] = await exchange(served.port, raw)
            assert_our_answer(answer, token, case)
        # A client that turns bad on a connection it used well is answered the same way.
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(10):
                assert (await reader.readuntil(b"\r\n\r\nok")).startswith(b"HTTP/1.1 200")
                writer.write(f"G\x01T /l/{token} HTTP/1.1\r\n\r\n".encode())
                assert_our_answer(parse(await reader.read())[0], token, "bad method, later")
        finally:
            writer.close()
        # The app still serves the link afterwards.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{served.port}/l/{token}") as page,
        ):
            assert page.status == 200

    logged = everything_logged(caplog.records)
    # The server logged each failure by its kind: non-HTTP bytes (a bad method) at DEBUG,
    # the rest at INFO; the request itself never.
    said = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert sum("sent a malformed request" in line for line in said) == len(malformed(token)) - 2
    assert sum("sent no HTTP (BadHttpMethod)" in line for line in said) == 3
    assert_no_secret(logged, (), [token])


async def test_the_served_process_answers_and_logs_the_same_way(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = tmp_path / "web.log"
    token = "Q" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-" * 2 + "Z9"
    with sandbox_process(0) as kashflow_url:
        await prepare_state(state, relay_port=2525)
        serve = ServeProcess(state, kashflow_url, role="web", log=log, verbose=True)
        await serve.start()
        try:
            for case, raw in malformed(token).items():
                [answer] = await exchange(serve.port, raw)
                assert_our_answer(answer, token, case)
        finally:
            assert await serve.terminate() == 0
    written = log.read_text()
    assert "DEBUG" in written  # the process logged at DEBUG throughout
    assert "sent a malformed request" in written
    assert_no_secret(written, (), [token])


async def test_the_redacted_logs_stay_readable(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Filtered loggers keep ordinary paths (a settings page's) and lose tokens only."""
    token = served.rig.mint("IVY01")
    access = logging.getLogger("aiohttp.access")
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        access.info('%s "%s %s"', "127.0.0.1", "POST", "/settings/customers/GRAN01/email")
        access.info("link %s then %s", f"/l/{token}", f"/elsewhere/{token}")
    first, second = (record.getMessage() for record in caplog.records[-2:])
    assert first == '127.0.0.1 "POST /settings/customers/GRAN01/email"'
    assert second == "link /l/… then /elsewhere/[redacted]"
