"""The worker's decisions: retries, poison, KashFlow refusals, and replies sent exactly once.

Runs the real service against the sandbox and the capture relay (see test_bot_e2e); some
messages go straight into the spool, as the listener would have put them.
"""

from __future__ import annotations

from unittest import mock

import pytest

from bot import pipeline
from bot.mailparse import Request, parse
from bot.reading import MailReader
from bot.worker import RetryPolicy
from kashflow.errors import (
    ApiDisabled,
    BadCredentials,
    IpNotAuthorised,
    KashFlowError,
    Rejected,
    Unavailable,
)
from kashflow.models import Credentials, Customer
from kashflow.sandbox import DEMO
from permalink.accounts import AccountSettings
from permalink.keyring import Keyring
from tests.support.bot import ACME, REQUEST, MakeRig, Rig, request_mail


async def spool(rig: Rig, raw: bytes, *, mail_from: str = ACME) -> int:
    """Put a message in the spool as the listener does, without waking the worker."""
    return await rig.core.store.spool.enqueue(
        peer="127.0.0.1:1", mail_from=mail_from, rcpt_tos=[REQUEST], raw=raw, account="demo"
    )


async def test_a_message_that_keeps_breaking_is_parked_while_the_queue_flows(rig: Rig) -> None:
    async def fragile(reader: MailReader, raw: bytes, envelope_sender: str | None) -> Request:
        if b"POISON" in raw:
            raise RuntimeError("parser bug")
        return parse(raw, envelope_sender=envelope_sender)

    with mock.patch.object(MailReader, "read", fragile):
        await rig.send(request_mail("POISON"))
        await rig.send(request_mail())
        [reply] = await rig.capture.wait_for(1)
        settled = await rig.service.worker.wait_for(lambda s: any(x.state == "parked" for x in s))
    assert reply.rcpt_tos == (ACME,)
    poison = [s for s in settled if s.state != "done"]
    assert [s.state for s in poison] == ["retry", "retry", "parked"]
    [parked] = await rig.core.store.spool.list(["parked"])
    assert parked.attempts == 3
    assert "gave up after 3 attempts" in parked.reason and "RuntimeError" in parked.reason
    assert "parser bug" not in parked.reason  # exception text may hold anything
    assert len(rig.capture.messages) == 1


async def test_kashflow_down_is_retried_and_then_answered(rig: Rig) -> None:
    rig.sandbox.faults.http_500 = True
    rig.sandbox.faults.operations = frozenset({"GetCustomerByEmail"})
    await rig.send(request_mail())
    [first] = await rig.settle(1)
    assert first.state == "retry"
    assert isinstance(first.outcome, pipeline.Deferred)
    assert "KashFlow" in first.outcome.reason
    rig.sandbox.faults.clear()
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (ACME,)
    events = await rig.events()
    assert events[0].outcome == "pending_retry"


async def test_kashflow_refusing_the_credentials_parks_with_a_human_reason(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(credentials=Credentials("demo", "not-the-password"))
    await rig.send(request_mail())
    [settled] = await rig.settle(1)
    assert settled.state == "parked"
    [parked] = await rig.core.store.spool.list(["parked"])
    assert "did not accept the username or password" in parked.reason
    assert "not-the-password" not in parked.reason
    [event] = await rig.events()
    assert event.outcome == "failed" and "not-the-password" not in event.detail
    assert rig.capture.messages == []


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (Unavailable("timed out"), pipeline.Deferred),
        (BadCredentials(), pipeline.Failed),
        (ApiDisabled(), pipeline.Failed),
        (IpNotAuthorised(), pipeline.Failed),
        (Rejected("SOAP fault"), pipeline.Failed),
    ],
)
def test_kashflow_errors_become_retries_or_parking(
    error: KashFlowError, verdict: type[pipeline.Outcome]
) -> None:
    assert isinstance(pipeline.kashflow_outcome(error), verdict)


def test_the_reply_goes_to_the_matching_address_on_file_else_the_first() -> None:
    customer = Customer(1, "B1", "B", email="accounts@b.example; Owner@B.example")
    assert pipeline.address_on_file(customer, "owner@b.example") == "Owner@B.example"
    assert pipeline.address_on_file(customer, "someone@b.example") == "accounts@b.example"
    assert pipeline.address_on_file(Customer(2, "C", "C"), "x@c.example") == ""


async def test_a_reply_interrupted_while_sending_is_resent_with_the_same_message_id(
    rig: Rig,
) -> None:
    spool_id = await spool(rig, request_mail())
    await rig.core.store.spool.record_reply(spool_id, "<earlier-attempt@bot.example>", "sending")
    rig.service.worker.wake()
    [reply] = await rig.capture.wait_for(1)
    assert reply.parsed()["Message-ID"] == "<earlier-attempt@bot.example>"
    await rig.settle(1)
    record = await rig.core.store.spool.reply_state(spool_id)
    assert record is not None and record.state == "sent"


async def test_a_reply_already_sent_is_not_sent_again(rig: Rig) -> None:
    spool_id = await spool(rig, request_mail())
    await rig.core.store.spool.record_reply(spool_id, "<sent@bot.example>", "sent")
    rig.service.worker.wake()
    [settled] = await rig.settle(1)
    assert settled.state == "done"
    assert rig.capture.messages == []
    [event] = await rig.events()
    assert event.outcome == "replied" and "already been sent" in event.detail


async def test_a_message_a_dead_worker_held_is_answered_once_its_lease_runs_out(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease_s=1.0)
    spool_id = await spool(rig, request_mail())
    claimed = await rig.core.store.spool.claim_next("a-worker-that-died")
    assert claimed is not None and claimed.id == spool_id  # "working", its owner gone
    rig.service.worker.wake()
    [settled] = await rig.settle(1)  # the worker waits for the lease, then takes it over
    assert (settled.spool_id, settled.state) == (spool_id, "done")
    [reply] = rig.capture.messages
    assert reply.rcpt_tos == (ACME,)
    record = await rig.core.store.spool.get(spool_id)
    assert record is not None and record.attempts == 2


async def test_mail_to_an_address_whose_bot_was_turned_off_is_parked(rig: Rig) -> None:
    spool_id = await spool(rig, request_mail())
    await rig.core.store.accounts.update("demo", enabled=False)
    rig.service.worker.wake()
    [settled] = await rig.settle(1)
    assert (settled.spool_id, settled.state) == (spool_id, "parked")
    [parked] = await rig.core.store.spool.list(["parked"])
    assert "turned off" in parked.reason


async def test_mail_spooled_for_an_account_the_operator_has_not_allowed_is_parked(
    make_rig: MakeRig,
) -> None:
    # Spooled before the operator restarted the bot with ALLOWED_ACCOUNTS.
    rig = await make_rig(allowed_accounts={"second"})
    spool_id = await spool(rig, request_mail())
    rig.service.worker.wake()
    [settled] = await rig.settle(1)
    assert (settled.spool_id, settled.state) == (spool_id, "parked")
    [parked] = await rig.core.store.spool.list(["parked"])
    assert parked.reason == "the account is not in ALLOWED_ACCOUNTS of this server"
    assert rig.capture.messages == []


async def test_mail_waits_while_the_bots_credentials_need_a_key_this_process_lacks(
    make_rig: MakeRig,
) -> None:
    # Retried until it works (as a day of retries would be), so saving the credentials
    # again cannot lose a race with the last attempt.
    rig = await make_rig(
        retry=RetryPolicy(base_delay=0.05, max_delay=0.2, max_temporary_attempts=10**6)
    )
    # Sealed with key 7: rotated on another machine whose key file has not arrived here.
    await AccountSettings(rig.db, Keyring.generate(7)).set_bot_credentials("demo", DEMO)
    await rig.send(request_mail())
    [first] = await rig.settle(1)
    assert first.state == "retry"
    [waiting] = await rig.core.store.spool.list(["retry", "working", "queued"])
    assert "sealed with a server key this process does not have" in waiting.reason
    assert "copy the current key file" in waiting.reason
    assert rig.capture.messages == []

    # Saved again on the settings page (with the key this process has): answered, once.
    await rig.core.store.accounts.set_bot_credentials("demo", DEMO)
    settled = await rig.service.worker.wait_for(lambda s: any(x.state == "done" for x in s))
    assert [s.state for s in settled][-1] == "done"
    assert {s.state for s in settled[:-1]} == {"retry"}
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (ACME,)
    assert len(rig.capture.messages) == 1


async def test_mail_is_parked_when_the_bots_credentials_fail_the_server_keys_check(
    rig: Rig,
) -> None:
    # Sealed under the same key id with another key (a key file swapped for a stranger's).
    await AccountSettings(rig.db, Keyring.generate()).set_bot_credentials("demo", DEMO)
    await rig.send(request_mail())
    [settled] = await rig.settle(1)
    assert settled.state == "parked"
    [parked] = await rig.core.store.spool.list(["parked"])
    assert "the bot's stored KashFlow credentials" in parked.reason
    assert "cannot be opened with the server key" in parked.reason
    assert "save them again on the settings page" in parked.reason
    assert rig.capture.messages == []


async def test_a_message_that_keeps_killing_the_bot_is_parked_in_the_end(rig: Rig) -> None:
    await rig.service.stop()
    spool_id = await spool(rig, request_mail())
    for n in range(12):  # twelve workers were stopped holding it
        assert await rig.core.store.spool.claim_next(f"worker-{n}") is not None
        await rig.core.store.spool.release(spool_id, f"worker-{n}")
    await rig.service.start()
    [settled] = await rig.settle(1)
    assert (settled.spool_id, settled.state) == (spool_id, "parked")
    [parked] = await rig.core.store.spool.list(["parked"])
    assert "interrupted too often" in parked.reason
    assert rig.capture.messages == []
