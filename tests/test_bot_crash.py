"""Killing the bot with SIGKILL mid-work loses no request and sends no reply twice.

The bot runs as its own process (``kashflow-permalink serve --role bot``) on a state
directory; the sandbox KashFlow and the capture relay run here. Requests are spooled, the
process is killed while it holds one of them, restarted on the same state directory
(the killed worker's lease runs out and the new one takes the message over), killed
again, and restarted once more; in the end every accepted request has exactly one reply.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.capture import CaptureServer
from kashflow.sandbox import Sandbox
from permalink.db import open_database
from permalink.spool import Spool
from tests.conftest import SandboxFactory
from tests.support.bot import ACME, REQUEST, request_mail
from tests.support.processes import ServeProcess, bot_env, prepare_state

REQUESTS = 6


@dataclass(frozen=True, slots=True)
class Crashable:
    """The bot as its own process, and the sandbox KashFlow it talks to (running here)."""

    bot: ServeProcess
    sandbox: Sandbox

    async def send(self, raw: bytes) -> None:
        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", self.bot.port, timeout=10) as client:
                client.sendmail(ACME, [REQUEST], raw)

        await asyncio.to_thread(deliver)


@pytest.fixture
async def crashable(tmp_path: Path, make_sandbox: SandboxFactory) -> AsyncIterator[Crashable]:
    # Latency keeps each request in hand long enough to be killed in the middle of it.
    sandbox = await make_sandbox(latency_ms=40)
    bot = ServeProcess(
        tmp_path / "state",
        sandbox.url,
        log=tmp_path / "bot.log",
        env=bot_env(concurrency=1, retry_base=0.1, lease_s=2.0),
    )
    yield Crashable(bot, sandbox)
    await bot.kill()


async def kill_while_busy(rig: Crashable, capture: CaptureServer, replied: int) -> None:
    """Once ``replied`` replies are out, kill the bot as it starts on the next request."""
    await capture.wait_for(replied, timeout=30)
    lookups = len([c for c in rig.sandbox.calls if c.operation == "GetCustomerByEmail"])
    await rig.sandbox.wait_for_call("GetCustomerByEmail", count=lookups + 1, within=30)
    await rig.bot.kill()


async def test_sigkill_mid_work_loses_nothing_and_duplicates_nothing(
    crashable: Crashable, tmp_path: Path
) -> None:
    bot = crashable.bot
    async with CaptureServer(tmp_path / "outbox") as capture:
        await prepare_state(bot.state, capture.port)
        await bot.start()
        sent_ids = [f"<crash-{n}@client.example>" for n in range(REQUESTS)]
        for message_id in sent_ids:
            await crashable.send(request_mail(message_id=message_id))

        await kill_while_busy(crashable, capture, replied=1)
        await bot.start()
        await kill_while_busy(crashable, capture, replied=3)
        await bot.start()

        replies = await capture.wait_for(REQUESTS, timeout=60)
        assert await bot.terminate() == 0
        # Stopped cleanly with nothing left to do: no late copy can still be on its way.
        replies = capture.messages

    answered = sorted(str(r.parsed()["In-Reply-To"]) for r in replies)
    assert answered == sorted(sent_ids)  # each request once: none lost, none twice
    assert all(r.rcpt_tos == (ACME,) for r in replies)
    assert len({str(r.parsed()["Message-ID"]) for r in replies}) == REQUESTS

    db = open_database(None, bot.state)
    try:
        counts = await Spool(db).counts()
    finally:
        db.close()
    assert counts["done"] == REQUESTS
    assert counts["working"] == counts["queued"] == counts["retry"] == counts["parked"] == 0
