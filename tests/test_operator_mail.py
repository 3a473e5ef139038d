"""Parked mail given back to the bot — from the shell and from the bot page — answered once.

The service runs as one real process (``serve --role all``); the relay (a capture server
here) refuses for a while, so requests are parked with its reason. Once it accepts again,
``kashflow-permalink mail requeue ID`` and the bot page's "Try again" each put a parked
request back once: it gets exactly one reply, and asking again does nothing. The process's
log says one line per message with its outcome, none of aiosmtpd's per-command lines, and
one line when SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.capture import CaptureServer
from kashflow.sandbox import DEMO, Sandbox
from permalink.db import open_database
from permalink.spool import Spool, SpoolEntry
from tests.support.bot import ACME, REQUEST, request_mail
from tests.support.operator import Browser, run_cli
from tests.support.processes import ServeProcess, bot_env, prepare_state

REFUSAL = (550, "5.7.1 Relaying denied for this sender")


@dataclass
class Running:
    state: Path
    server: ServeProcess
    capture: CaptureServer

    async def spool(self) -> list[SpoolEntry]:
        db = open_database(None, self.state)
        try:
            return list(reversed(await Spool(db).list(limit=100)))
        finally:
            db.close()

    async def until_parked(self, count: int, within: float = 30.0) -> list[SpoolEntry]:
        """Wait (at most ``within`` seconds) until ``count`` messages are parked."""
        async with asyncio.timeout(within):
            while True:
                parked = [e for e in await self.spool() if e.state == "parked"]
                if len(parked) >= count:
                    return parked
                await asyncio.sleep(0.05)


@pytest.fixture
async def running(
    tmp_path: Path, sandbox: Sandbox, unused_tcp_port_factory: Callable[[], int]
) -> AsyncIterator[Running]:
    state = tmp_path / "state"
    port = unused_tcp_port_factory()
    async with CaptureServer(tmp_path / "outbox", fail_with=REFUSAL) as capture:
        await prepare_state(state, capture.port)
        server = ServeProcess(
            state,
            sandbox.url,
            role="all",
            port=port,
            public_base_url=f"http://127.0.0.1:{port}",
            log=tmp_path / "serve.log",
            env={**bot_env(), "KASHFLOW_PERMALINK_SMTP_PORT": "0"},
        )
        await server.start()
        try:
            yield Running(state, server, capture)
        finally:
            await server.kill()


async def test_parked_mail_is_answered_once_from_the_shell_and_from_the_bot_page(
    running: Running,
) -> None:
    server, capture = running.server, running.capture
    for n in (1, 2):
        await server.send_mail(
            request_mail(message_id=f"<stuck-{n}@client.example>"), ACME, REQUEST
        )
    first, second = await running.until_parked(2)
    assert "Relaying denied" in first.reason
    capture.fail_with = None  # the operator fixed the relay

    listed = await run_cli("mail", "list", "--state-dir", str(running.state))
    assert listed.returncode == 0
    assert re.search(rf"^#{first.id} parked .* from {ACME} .*Relaying denied", listed.stdout, re.M)

    # From the shell.
    requeued = await run_cli("mail", "requeue", str(first.id), "--state-dir", str(running.state))
    assert requeued.returncode == 0
    assert requeued.stdout.startswith(f"#{first.id} from {ACME} is queued again")
    [reply] = await capture.wait_for(1, timeout=30)
    assert reply.parsed()["In-Reply-To"] == "<stuck-1@client.example>"
    again = await run_cli("mail", "requeue", str(first.id), "--state-dir", str(running.state))
    assert again.returncode == 1
    assert again.stdout == f"#{first.id} is not parked (it is done): left as it is\n"

    # From the bot page: the parked request is listed with its reason and "Try again";
    # pressing it twice (a double click: the same form twice) queues it once, and the
    # button on a page drawn before that (another tab) does nothing either.
    async with Browser(server.public_base_url) as browser:
        await browser.sign_in(DEMO)
        _, page = await browser.get("/settings/bot")
        assert f"#{second.id}" in page and "Relaying denied" in page and "Try again" in page
        action = f"/settings/bot/mail/{second.id}/requeue"
        form = await browser.form("/settings/bot", action)
        other_tab = await browser.form("/settings/bot", action)
        assert form["once"] != other_tab["once"]
        _, done = await browser.post(action, form)
        assert "The request is queued again" in done
        _, twice = await browser.post(action, form)
        assert "The request is queued again" in twice  # the first answer, shown again
        _, late = await browser.post(action, other_tab)
        assert "That request is no longer parked" in late

    replies = await capture.wait_for(2, timeout=30)
    assert sorted(str(r.parsed()["In-Reply-To"]) for r in replies) == [
        "<stuck-1@client.example>",
        "<stuck-2@client.example>",
    ]
    assert await server.terminate() == 0
    # Stopped cleanly with both settled: no further copy can still be on its way.
    assert len(capture.messages) == 2
    assert [e.state for e in await running.spool()] == ["done", "done"]

    log = server.log.read_text()
    outcomes = [line for line in log.splitlines() if " INFO bot.worker: spool #" in line]
    # One line per attempt with its outcome: parked twice, then replied twice.
    assert len(outcomes) == 4
    assert sum("parked (failed: " in line and "Relaying denied" in line for line in outcomes) == 2
    assert sum(": done (replied: " in line for line in outcomes) == 2
    assert "mail.log" not in log and "AUTH" not in log  # aiosmtpd's chatter stays at DEBUG
    assert "stopped (SIGTERM): no longer serving" in log.splitlines()[-1]


async def test_requeue_all_parked_answers_each_once(running: Running) -> None:
    for n in (1, 2, 3):
        raw = request_mail(message_id=f"<all-{n}@client.example>")
        await running.server.send_mail(raw, ACME, REQUEST)
    await running.until_parked(3)
    running.capture.fail_with = None
    requeued = await run_cli("mail", "requeue", "--all-parked", "--state-dir", str(running.state))
    assert requeued.returncode == 0
    assert requeued.stdout.count("is queued again") == 3
    replies = await running.capture.wait_for(3, timeout=30)
    assert len({str(r.parsed()["In-Reply-To"]) for r in replies}) == 3
    nothing = await run_cli("mail", "requeue", "--all-parked", "--state-dir", str(running.state))
    assert (nothing.returncode, nothing.stdout) == (0, "no parked mail\n")
    assert await running.server.terminate() == 0
    assert len(running.capture.messages) == 3
