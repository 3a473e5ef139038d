"""Killing the bot with SIGKILL while it works through a mailbox of 50 requests: each
request is answered once, none lost, none twice.

The bot runs as its own process (``kashflow-permalink serve --role bot``) reading a real
IMAP mailbox (Dovecot on loopback); the sandbox KashFlow and the capture relay run here.
Half the requests wait in the mailbox when the bot first starts; it is killed while it
answers them, the other half arrive while it is down, and it is killed again mid-way
before the last restart. The mailbox's lease of a killed process runs out and the
restarted one reads on: a message spooled before a kill is never taken again, and one
fetched but not yet spooled is taken on the next look.
"""

from __future__ import annotations

from pathlib import Path

from app.dovecot import Dovecot
from bot.capture import CaptureServer
from bot.imap import HANDLED
from kashflow.sandbox import Sandbox
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.spool import Spool
from permalink.store import SqlStore
from tests.conftest import SandboxFactory
from tests.support.bot import request_mail
from tests.support.imap import MakeDovecot, append, configure_mailbox, flags_of
from tests.support.processes import ServeProcess, bot_env, prepare_state

REQUESTS = 50


async def kill_while_busy(
    bot: ServeProcess, sandbox: Sandbox, capture: CaptureServer, replied: int
) -> None:
    """Once ``replied`` replies are out, kill the bot as it starts on the next request."""
    await capture.wait_for(replied, timeout=60)
    lookups = len([c for c in sandbox.calls if c.operation == "GetCustomerByEmail"])
    await sandbox.wait_for_call("GetCustomerByEmail", count=lookups + 1, within=30)
    await bot.kill()


async def configure(state: Path, server: Dovecot) -> None:
    db = open_database(None, state)
    try:
        await configure_mailbox(SqlStore(db, Keyring.load(state / "server.key")).mailboxes, server)
    finally:
        db.close()


async def test_sigkill_mid_mailbox_answers_each_request_once(
    tmp_path: Path, make_sandbox: SandboxFactory, make_dovecot: MakeDovecot
) -> None:
    # Latency keeps each request in hand long enough to be killed in the middle of it.
    sandbox = await make_sandbox(latency_ms=40)
    server = make_dovecot()
    bot = ServeProcess(
        tmp_path / "state",
        sandbox.url,
        log=tmp_path / "bot.log",
        env={
            **bot_env(concurrency=2, retry_base=0.1, lease_s=2.0),
            "KASHFLOW_PERMALINK_IMAP_CA_FILE": str(server.certificate),
            "KASHFLOW_PERMALINK_IMAP_IDLE_SECONDS": "30",
        },
    )
    sent = [f"<mailbox-{n}@client.example>" for n in range(REQUESTS)]
    try:
        async with CaptureServer(tmp_path / "outbox") as capture:
            await prepare_state(bot.state, capture.port)
            await configure(bot.state, server)
            await append(server, *(request_mail(message_id=m) for m in sent[:25]))

            await bot.start()
            await kill_while_busy(bot, sandbox, capture, replied=5)
            await append(server, *(request_mail(message_id=m) for m in sent[25:]))
            await bot.start()
            await kill_while_busy(bot, sandbox, capture, replied=30)
            await bot.start()

            await capture.wait_for(REQUESTS, timeout=120)
            assert await bot.terminate() == 0
            # Stopped cleanly with nothing left to do: no late copy can still be on its way.
            replies = capture.messages
    finally:
        await bot.kill()

    answered = sorted(str(r.parsed()["In-Reply-To"]) for r in replies)
    assert answered == sorted(sent)  # each request once: none lost, none twice
    flags = await flags_of(server)
    assert len(flags) == REQUESTS
    assert all(HANDLED in f and "\\Seen" in f for f in flags.values())
    db = open_database(None, bot.state)
    try:
        counts = await Spool(db).counts()
    finally:
        db.close()
    assert counts["done"] == REQUESTS
    assert counts["working"] == counts["queued"] == counts["retry"] == counts["parked"] == 0
