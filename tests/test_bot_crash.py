"""Killing the bot with SIGKILL mid-work loses no request and sends no reply twice.

The bot runs as its own process (``python -m bot.service``) on a state directory; the
sandbox KashFlow and the capture relay run here. Requests are spooled, the process is
killed while it holds one of them, restarted on the same state directory, killed again,
and restarted once more; in the end every accepted request has exactly one reply.
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.capture import CaptureServer
from kashflow.sandbox import DEMO, Sandbox
from permalink.accounts import AccountSettings
from permalink.db import Database
from permalink.keyring import Keyring
from permalink.spool import Spool
from tests.conftest import SandboxFactory
from tests.test_bot_e2e import ACME, BASE_URL, DOMAIN, REQUEST, request_mail

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 6


class BotProcess:
    """One run of ``python -m bot.service`` on a state directory."""

    def __init__(self, state: Path, sandbox: Sandbox, log: Path) -> None:
        self.state, self.sandbox, self.log = state, sandbox, log
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.service",
                "--state-dir",
                str(self.state),
                "--kashflow-url",
                self.sandbox.url,
                "--smtp-port",
                "0",
                "--public-base-url",
                BASE_URL,
                "--mail-domain",
                DOMAIN,
                "--concurrency",
                "1",
                "--retry-base",
                "0.1",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await self.proc.stdout.readline()).decode()
        assert line.startswith("listening "), f"the bot did not start: {line!r}"
        self.port = int(line.split()[-1])

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no clean-up of any kind
        await self.proc.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        async with asyncio.timeout(20):
            return await self.proc.wait()

    async def send(self, raw: bytes) -> None:
        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.sendmail(ACME, [REQUEST], raw)

        await asyncio.to_thread(deliver)


@pytest.fixture
async def bot(tmp_path: Path, make_sandbox: SandboxFactory) -> AsyncIterator[BotProcess]:
    # Latency keeps each request in hand long enough to be killed in the middle of it.
    sandbox = await make_sandbox(latency_ms=40)
    state = tmp_path / "state"
    state.mkdir()
    keyring = Keyring.create(state / "server.key")
    db = Database(state / "state.sqlite3")
    try:
        await AccountSettings(db, keyring).set_bot_credentials("demo", DEMO)
    finally:
        db.close()
    process = BotProcess(state, sandbox, tmp_path / "bot.log")
    yield process
    if process.proc is not None and process.proc.returncode is None:
        await process.kill()


async def configure(bot: BotProcess, relay_port: int) -> None:
    db = Database(bot.state / "state.sqlite3")
    try:
        accounts = AccountSettings(db, Keyring.load(bot.state / "server.key"))
        await accounts.update(
            "demo",
            enabled=True,
            request_address=REQUEST,
            relay_host="127.0.0.1",
            relay_port=relay_port,
            relay_security="none",
            default_scope="unpaid",
            per_customer_limit=50,
            global_limit=100,
        )
    finally:
        db.close()


async def kill_while_busy(bot: BotProcess, capture: CaptureServer, replied: int) -> None:
    """Once ``replied`` replies are out, kill the bot as it starts on the next request."""
    await capture.wait_for(replied, timeout=30)
    lookups = len([c for c in bot.sandbox.calls if c.operation == "GetCustomerByEmail"])
    await bot.sandbox.wait_for_call("GetCustomerByEmail", count=lookups + 1, within=30)
    await bot.kill()


async def test_sigkill_mid_work_loses_nothing_and_duplicates_nothing(
    bot: BotProcess, tmp_path: Path
) -> None:
    async with CaptureServer(tmp_path / "outbox") as capture:
        await configure(bot, capture.port)
        await bot.start()
        sent_ids = [f"<crash-{n}@client.example>" for n in range(REQUESTS)]
        for message_id in sent_ids:
            await bot.send(request_mail(message_id=message_id))

        await kill_while_busy(bot, capture, replied=1)
        await bot.start()
        await kill_while_busy(bot, capture, replied=3)
        await bot.start()

        replies = await capture.wait_for(REQUESTS, timeout=60)
        assert await bot.terminate() == 0
        # Stopped cleanly with nothing left to do: no late copy can still be on its way.
        replies = capture.messages

    answered = sorted(str(r.parsed()["In-Reply-To"]) for r in replies)
    assert answered == sorted(sent_ids)  # each request once: none lost, none twice
    assert all(r.rcpt_tos == (ACME,) for r in replies)
    assert len({str(r.parsed()["Message-ID"]) for r in replies}) == REQUESTS

    db = Database(bot.state / "state.sqlite3")
    try:
        counts = await Spool(db).counts()
    finally:
        db.close()
    assert counts["done"] == REQUESTS
    assert counts["working"] == counts["queued"] == counts["retry"] == counts["parked"] == 0
