"""The bot's IMAP door against a real IMAP server (Dovecot on loopback).

Requests are delivered into the mailbox with IMAP APPEND, the way a mail server files
them; the bot reads them, answers through the capture relay, and moves or flags each one.
Each assertion is something the accountant or their client would notice: a reply, a
message left in the mailbox looking handled, the one reply to each request.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest

from bot.imap import HANDLED, MailboxError, Session
from bot.mailbox import MailboxPolicy, envelope_sender
from permalink.db import StoreUnavailable
from permalink.mailboxes import Mailboxes
from tests.support.bot import ACME, MakeRig, Rig, request_mail
from tests.support.imap import PASSWORD, MakeDovecot, append, configure_mailbox, flags_of

#: IDLE long enough that a reply within a test's time can only come from the server's push.
IDLE_ONLY = dict(idle_s=3600.0, poll_s=3600.0, retry_s=0.05, retry_max_s=0.2, lease_s=3.0)


def policy(server_ca: str, **changes: Any) -> MailboxPolicy:
    return MailboxPolicy(**{**IDLE_ONLY, "ca_file": server_ca, **changes})


async def mailbox_rig(
    make_rig: MakeRig, make_dovecot: MakeDovecot, **options: Any
) -> tuple[Rig, Any]:
    server = make_dovecot(idle=options.pop("idle", True))
    rig = await make_rig(
        mailboxes=policy(str(server.certificate), **options.pop("policy", {})), **options
    )
    return rig, server


async def door_reading(rig: Rig) -> None:
    """Until the door has taken the mailbox's lease (a check runs at once at start)."""
    door = rig.service.door
    assert door is not None
    await door.check()
    assert door.reading == ["demo"]


async def test_a_request_in_the_mailbox_is_answered_and_flagged(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot)
    await configure_mailbox(rig.core, server)
    await door_reading(rig)
    # The reader is now waiting in IDLE: only the server's push can bring this one in.
    await append(server, request_mail(message_id="<imap-1@client.example>"))

    (reply,) = await rig.capture.wait_for(1, timeout=20)
    assert reply.rcpt_tos == (ACME,)
    assert str(reply.parsed()["In-Reply-To"]) == "<imap-1@client.example>"
    assert "/l/" in reply.parsed().get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    settled = await rig.settle(1)
    assert settled[0].state == "done"
    flags = await flags_of(server)
    assert list(flags.values()) == [{"\\Seen", HANDLED}]
    status = (await rig.core.store.mailboxes.get("demo")).status
    assert "waiting with IDLE" in status
