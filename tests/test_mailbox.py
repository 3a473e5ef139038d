"""The bot's IMAP door against a real IMAP server (Dovecot on loopback).

Requests are delivered into the mailbox with IMAP APPEND, the way a mail server files
them; the bot reads them, answers through the capture relay, and moves or flags each one.
Each assertion is something the accountant or their client would notice: a reply, a
message left in the mailbox looking handled, the one reply to each request.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from bot.imap import HANDLED, MailboxError, Session
from bot.mailbox import MailboxPolicy, envelope_sender
from permalink.db import StoreUnavailable
from permalink.mailboxes import Mailboxes
from tests.support.bot import ACME, MakeRig, Rig, request_mail
from tests.support.imap import (
    PASSWORD,
    MakeDovecot,
    append,
    configure_mailbox,
    flags_of,
    until,
)

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
    await configure_mailbox(rig.core.store.mailboxes, server)
    await door_reading(rig)
    # The reader is now waiting in IDLE: only the server's push can bring this one in.
    await append(server, request_mail(message_id="<imap-1@client.example>"))

    (reply,) = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (ACME,)
    assert str(reply.parsed()["In-Reply-To"]) == "<imap-1@client.example>"
    assert "/l/" in reply.parsed().get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    settled = await rig.settle(1)
    assert settled[0].state == "done"
    flags = await flags_of(server)
    assert list(flags.values()) == [{"\\Seen", HANDLED}]
    status = (await rig.core.store.mailboxes.get("demo")).status
    assert "waiting with IDLE" in status


async def test_the_mailbox_of_an_account_the_operator_has_not_allowed_is_not_read(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    # Set up before the operator listed the accounts this server serves.
    rig, server = await mailbox_rig(make_rig, make_dovecot, allowed_accounts={"second"})
    await configure_mailbox(rig.core.store.mailboxes, server)
    await append(server, request_mail(message_id="<imap-refused@client.example>"))
    door = rig.service.door
    assert door is not None
    await door.check()
    assert door.reading == []
    # The request is left as it arrived: not taken, not flagged, not answered.
    [flags] = (await flags_of(server)).values()
    assert "\\Seen" not in flags and HANDLED not in flags
    assert await rig.core.store.spool.list() == []
    assert rig.capture.messages == []


async def test_a_server_without_idle_is_polled(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot, idle=False, policy={"poll_s": 0.2})
    await configure_mailbox(rig.core.store.mailboxes, server)
    await door_reading(rig)
    await append(server, request_mail(message_id="<poll-1@client.example>"))

    (reply,) = await rig.capture.wait_for(1)
    assert str(reply.parsed()["In-Reply-To"]) == "<poll-1@client.example>"
    assert "polling" in (await rig.core.store.mailboxes.get("demo")).status


async def test_handled_mail_is_moved_to_its_folder_over_starttls(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot)
    await append(
        server,
        request_mail(message_id="<move-1@client.example>"),
        request_mail(message_id="<move-2@client.example>"),
    )
    await configure_mailbox(
        rig.core.store.mailboxes, server, security="starttls", done_folder="Answered"
    )
    await door_reading(rig)

    replies = await rig.capture.wait_for(2)
    assert sorted(str(r.parsed()["In-Reply-To"]) for r in replies) == [
        "<move-1@client.example>",
        "<move-2@client.example>",
    ]
    assert await flags_of(server, "INBOX") == {}
    moved = await flags_of(server, "Answered")
    assert len(moved) == 2


async def test_bounces_auto_replies_and_old_mail_get_no_answer(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot)
    bounce = b"Return-Path: <>\r\n" + request_mail(message_id="<bounce@client.example>")
    vacation = request_mail(
        message_id="<away@client.example>", extra="Auto-Submitted: auto-replied\r\n"
    )
    await append(server, bounce, vacation)
    old = datetime.now(UTC) - timedelta(days=30)
    await append(server, request_mail(message_id="<old@client.example>"), when=old)
    await append(server, request_mail(message_id="<fresh@client.example>"))
    await configure_mailbox(rig.core.store.mailboxes, server)
    await door_reading(rig)

    settled = await rig.settle(3)
    (reply,) = rig.capture.messages
    assert str(reply.parsed()["In-Reply-To"]) == "<fresh@client.example>"
    assert sorted(s.state for s in settled) == ["done", "done", "done"]
    flags = await flags_of(server)
    handled = [uid for uid, f in flags.items() if HANDLED in f]
    assert len(handled) == 3  # the month-old message is left alone, unread
    assert [f for f in flags.values() if HANDLED not in f] == [set()]
    events = await rig.events()
    assert sorted(e.detail for e in events if e.outcome == "ignored") == [
        "Auto-Submitted: auto-replied",
        "null reverse-path (MAIL FROM:<>)",
    ]


async def test_a_wrong_password_is_shown_then_reading_resumes_once_fixed(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot)
    await append(server, request_mail(message_id="<late@client.example>"))
    await configure_mailbox(rig.core.store.mailboxes, server, password="not-the-password")
    await door_reading(rig)
    mailboxes = rig.core.store.mailboxes

    async def refused() -> bool:
        return "could not sign in" in (await mailboxes.get("demo")).status

    await until(refused)
    status = (await mailboxes.get("demo")).status
    assert status.startswith("Could not read the mailbox: could not sign in")
    assert "not-the-password" not in status
    assert rig.capture.messages == []

    await mailboxes.set_password("demo", PASSWORD)
    await door_reading(rig)  # the changed settings restart the reader
    (reply,) = await rig.capture.wait_for(1)
    assert str(reply.parsed()["In-Reply-To"]) == "<late@client.example>"


async def test_a_crash_between_spooling_and_flagging_never_takes_a_message_twice(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot)
    await append(server, request_mail(message_id="<once@client.example>"))
    real_flag = Session.flag
    calls = 0

    async def flag_fails_first(self: Session, uid: int, keyword: bool) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MailboxError("injected: the connection dropped before the flag")
        await real_flag(self, uid, keyword)

    with mock.patch.object(Session, "flag", flag_fails_first):
        await configure_mailbox(rig.core.store.mailboxes, server)
        await door_reading(rig)
        await rig.capture.wait_for(1)

        async def flagged() -> bool:
            return HANDLED in next(iter((await flags_of(server)).values()))

        await until(flagged)

    assert calls == 2  # flagged on the reader's second look, not taken again
    await rig.settle(1)
    assert (await rig.core.store.spool.counts())["done"] == 1
    assert len(rig.capture.messages) == 1


async def test_a_crash_before_spooling_takes_the_message_on_the_next_look(
    make_rig: MakeRig, make_dovecot: MakeDovecot
) -> None:
    rig, server = await mailbox_rig(make_rig, make_dovecot)
    await append(server, request_mail(message_id="<retry@client.example>"))
    real_take = Mailboxes.take
    calls = 0

    async def take_fails_first(self: Mailboxes, *args: Any, **kwargs: Any) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("injected: the database went away")
        return await real_take(self, *args, **kwargs)

    with mock.patch.object(Mailboxes, "take", take_fails_first):
        await configure_mailbox(rig.core.store.mailboxes, server)
        await door_reading(rig)
        (reply,) = await rig.capture.wait_for(1)

    assert str(reply.parsed()["In-Reply-To"]) == "<retry@client.example>"
    assert calls == 2
    await rig.settle(1)
    assert (await rig.core.store.spool.counts())["done"] == 1


def test_the_envelope_sender_comes_from_return_path_else_from() -> None:
    assert envelope_sender(b"Return-Path: <>\r\nFrom: a@b.example\r\n\r\nhi") == ""
    assert envelope_sender(b"Return-Path: <bounce@b.example>\r\nFrom: a@b.example\r\n\r\n") == (
        "bounce@b.example"
    )
    assert envelope_sender(b"From: Client <a@b.example>\r\n\r\nhi") == "a@b.example"
    assert envelope_sender(b"Subject: nobody\r\n\r\nhi") == ""
