"""The mail bot end to end over loopback sockets.

smtplib (in a thread) -> BotService (listener, spool, worker) -> sandbox KashFlow ->
CaptureServer standing in for the relay. Each test reads back what a customer would
receive: who it went to, the permalink inside (opened with the server key), the PDF.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from bot.capture import CapturedMessage, CaptureServer
from bot.pipeline import MAX_REPLIES_PER_THREAD, Ignored, Replied
from kashflow.sandbox import SECOND
from tests.support.bot import (
    ACME,
    DOMAIN,
    MAIL,
    REQUEST,
    MakeRig,
    Rig,
    attachment,
    body_text,
    expected_pages,
    pages,
    request_mail,
    scenario,
    unpaid_numbers,
)
from tests.support.stores import both_stores

# -- a request answered -----------------------------------------------------------------


@both_stores
async def test_a_customer_request_gets_one_reply_with_their_link_and_pdf(rig: Rig) -> None:
    raw = request_mail(message_id="<first@client.example>")
    await rig.send(raw)
    [reply] = await rig.capture.wait_for(1)
    [settled] = await rig.settle(1)

    assert settled.state == "done"
    assert reply.rcpt_tos == (ACME,)
    assert reply.mail_from == "<>"  # RFC 3834: automatic replies go out with a null sender
    parsed = reply.parsed()
    assert parsed["To"] == ACME
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<first@client.example>"
    assert str(parsed["Message-ID"]).endswith(f"@{DOMAIN}>")

    link = rig.link(reply)
    acme = rig.sandbox.customer("demo", "ACME01")
    assert (link.customer_code, link.customer_id) == ("ACME01", acme.id)
    assert str(link.scope) == "unpaid"
    assert link.credentials.username == "demo"
    record = await rig.core.store.links.get("demo", link.link_id)
    assert record is not None and record.minted_by == "bot"

    pdf = attachment(reply)
    assert pdf is not None
    unpaid = unpaid_numbers(rig, "ACME01")
    assert len(unpaid) == 7
    # The statement page, then every page of every unpaid invoice.
    assert pages(pdf) == 1 + await expected_pages(rig, unpaid)
    for number in unpaid:
        assert f"Invoice {number}" in body_text(reply)
    # With no wording of the accountant's saved, the reply greets the contact by name.
    assert body_text(reply).lstrip().startswith(f"Hello {acme.contact_first} {acme.contact_last},")

    [event] = await rig.events()
    assert (event.kind, event.outcome) == ("bot_request", "replied")
    assert event.subject == "Acme Fabrication Ltd (ACME01)"
    assert "/l/" not in event.detail and "/l/" not in event.subject


async def test_asking_for_unpaid_invoices_sends_only_those(make_rig: MakeRig) -> None:
    rig = await make_rig(default_scope="all")
    await rig.send(
        request_mail("What do we still owe you?", sender="maggie@dunes.example"),
        mail_from="maggie@dunes.example",
    )
    [reply] = await rig.capture.wait_for(1)
    assert str(rig.link(reply).scope) == "unpaid"
    unpaid = unpaid_numbers(rig, "DUNE01")
    pdf = attachment(reply)
    assert pdf is not None and pages(pdf) == 1 + await expected_pages(rig, unpaid)


async def test_asking_for_one_invoice_sends_that_invoice(rig: Rig) -> None:
    number = rig.sandbox.invoices("demo", "ACME01")[30].number  # an old, paid one
    await rig.send(request_mail(f"Could I have a copy of invoice {number}?"))
    [reply] = await rig.capture.wait_for(1)
    link = rig.link(reply)
    assert (link.scope.kind, link.scope.invoice) == ("invoice", number)
    pdf = attachment(reply)
    assert pdf is not None and pages(pdf) == 1 + await expected_pages(rig, [number])


async def test_someone_elses_invoice_number_gets_the_default_scope(rig: Rig) -> None:
    theirs = rig.sandbox.invoices("demo", "DUNE01")[0].number
    await rig.send(request_mail(f"Please send invoice {theirs}"))
    [reply] = await rig.capture.wait_for(1)
    link = rig.link(reply)
    assert (link.customer_code, str(link.scope)) == ("ACME01", "unpaid")
    text = " ".join(body_text(reply).split())
    assert f"Invoice {theirs}" not in text
    # Said exactly as for an invoice that does not exist: nothing about whose it is.
    assert (
        f"We could not find invoice {theirs} on your account, so here is what we send by"
        " default." in text
    )
    assert "Dunes" not in text and "DUNE01" not in text
    assert "We were not sure" not in text


async def test_a_range_of_invoices_gets_exactly_theirs_and_names_the_rest(rig: Rig) -> None:
    acme = {i.number for i in rig.sandbox.invoices("demo", "ACME01")}
    asked = range(1241, 1249)
    theirs = [n for n in asked if n in acme]
    others = [n for n in asked if n not in acme]
    assert len(theirs) >= 2 and others  # the seeded ledger interleaves customers here
    await rig.send(request_mail("Could you send invoices 1241 to 1248 please?"))
    [reply] = await rig.capture.wait_for(1)
    link = rig.link(reply)
    # The link is sealed for exactly the customer's own invoices among those asked for.
    assert (link.scope.kind, link.scope.numbers) == ("invoice", tuple(theirs))
    text = " ".join(body_text(reply).split())
    for number in theirs:
        assert f"Invoice {number}" in text
    for number in others:
        assert f"Invoice {number} " not in text
    missing = ", ".join(str(n) for n in others[:-1]) + f" and {others[-1]}"
    noun = "invoice" if len(others) == 1 else "invoices"
    assert f"We could not find {noun} {missing if len(others) > 1 else others[0]}" in text
    pdf = attachment(reply)
    assert pdf is not None and pages(pdf) == 1 + await expected_pages(rig, theirs)


async def test_a_list_of_their_invoices_is_sent_as_one_set(rig: Rig) -> None:
    first, second = (i.number for i in rig.sandbox.invoices("demo", "ACME01")[5:7])
    await rig.send(request_mail(f"Hi, please resend INV-{first} and #{second}. Thanks"))
    [reply] = await rig.capture.wait_for(1)
    assert rig.link(reply).scope.numbers == tuple(sorted((first, second)))
    text = " ".join(body_text(reply).split())
    assert "This link always shows these invoices as they stand" in text
    assert "We could not find" not in text and "We were not sure" not in text


async def test_my_invoices_gets_the_default_without_the_hint(rig: Rig) -> None:
    await rig.send(request_mail("Could you send me my invoices please?"))
    [reply] = await rig.capture.wait_for(1)
    assert str(rig.link(reply).scope) == "unpaid"
    assert "We were not sure" not in body_text(reply)


async def test_a_welsh_request_is_read_and_its_language_recorded(rig: Rig) -> None:
    await rig.send(
        request_mail(
            "A allech chi anfon yr anfonebau sydd heb eu talu os gwelwch yn dda?",
            subject="Anfonebau",
        )
    )
    [reply] = await rig.capture.wait_for(1)
    assert str(rig.link(reply).scope) == "unpaid"
    await rig.settle(1)
    [event] = await rig.events()
    assert "written in Welsh" in event.detail


async def test_a_statement_request_is_the_unpaid_scope_and_is_recorded(rig: Rig) -> None:
    await rig.send(request_mail("Bitte senden Sie uns einen Kontoauszug.", subject="Kontoauszug"))
    [reply] = await rig.capture.wait_for(1)
    assert str(rig.link(reply).scope) == "unpaid"
    await rig.settle(1)
    [event] = await rig.events()
    assert "a statement was asked for" in event.detail and "written in German" in event.detail


def answer(reply: CapturedMessage, body: str, *, message_id: str | None = None) -> bytes:
    """A message written in answer to one of the bot's replies, threaded as clients do."""
    parsed = reply.parsed()
    chain = f"{parsed['References']} {parsed['Message-ID']}".strip()
    return request_mail(
        body,
        subject=str(parsed["Subject"]),
        message_id=message_id,
        extra=f"In-Reply-To: {parsed['Message-ID']}\r\nReferences: {chain}\r\n",
    )


async def test_a_person_answering_the_bot_is_answered_and_a_thank_you_is_not(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(per_customer_limit=20)
    number = rig.sandbox.invoices("demo", "ACME01")[2].number
    await rig.send(request_mail(f"Hello, please send me invoice {number}."))
    [first] = await rig.capture.wait_for(1)
    assert rig.link(first).scope.numbers == (number,)

    await rig.send(answer(first, "Thanks! Could you send just the unpaid ones?"))
    [_, second] = await rig.capture.wait_for(2)
    assert str(rig.link(second).scope) == "unpaid"
    assert second.parsed()["In-Reply-To"] != first.parsed()["In-Reply-To"]

    await rig.send(answer(second, "Got it, thank you!"))
    await rig.settle(3)
    assert len(rig.capture.messages) == 2
    events = await rig.events()
    assert [e.outcome for e in events] == ["replied", "replied", "ignored"]
    assert "asks for nothing" in events[2].detail


async def test_a_responder_repeating_itself_in_a_thread_is_answered_once(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(per_customer_limit=20)
    await rig.send(request_mail("Please send the unpaid invoices."))
    [first] = await rig.capture.wait_for(1)
    # A responder that sets no header and whose words read as a request.
    notice = "We have received your message. Please send outstanding invoices to ap@acme.example."
    await rig.send(answer(first, notice))
    [_, second] = await rig.capture.wait_for(2)
    await rig.send(answer(second, notice))
    await rig.settle(3)
    assert len(rig.capture.messages) == 2
    events = await rig.events()
    assert events[2].outcome == "ignored"
    assert "repeated identical mail" in events[2].detail


async def test_replies_in_one_thread_are_capped(make_rig: MakeRig) -> None:
    rig = await make_rig(per_customer_limit=20)
    first, second = (i.number for i in rig.sandbox.invoices("demo", "ACME01")[3:5])
    await rig.send(request_mail("Please send the unpaid invoices."))
    asks = [
        f"Thanks, now could you send invoice {first} on its own?",
        f"And invoice {second} please.",
        "Sorry, one more: a statement please.",
    ]
    for count, body in enumerate(asks, start=1):
        replies = await rig.capture.wait_for(count)
        await rig.send(answer(replies[-1], body))
    await rig.settle(4)
    assert len(rig.capture.messages) == 3
    events = await rig.events()
    assert events[3].outcome == "ignored" and "in one thread" in events[3].detail
    # A new message, outside the thread, is answered as usual.
    await rig.send(request_mail("Please send the unpaid invoices."))
    assert len(await rig.capture.wait_for(4)) == 4


async def test_a_spoofed_reply_to_is_ignored(rig: Rig) -> None:
    raw = scenario("spoofed-reply-to.eml", {"jane.holloway@hollyhock-bakery.example": ACME})
    await rig.send(raw)
    # "All invoices please" from ACME01 merges 220 PDFs: seconds on a busy machine.
    [reply] = await rig.capture.wait_for(1, timeout=30)
    assert reply.rcpt_tos == (ACME,)
    assert reply.parsed()["To"] == ACME
    assert b"h0lloway" not in reply.raw


async def test_several_addresses_on_file_reply_to_the_one_that_wrote(make_rig: MakeRig) -> None:
    rig = await make_rig(default_scope="all")
    await rig.send(
        request_mail(sender="Owner@Brightwater.example"), mail_from="owner@brightwater.example"
    )
    [reply] = await rig.capture.wait_for(1)
    # The spelling KashFlow has on file, not the one the message used.
    assert reply.rcpt_tos == ("owner@brightwater.example",)
    assert rig.link(reply).customer_code == "BRIGHT01"


async def test_a_pdf_over_the_attachment_limit_is_left_out(make_rig: MakeRig) -> None:
    rig = await make_rig(max_attachment_bytes=100 * 1024)
    await rig.send(request_mail("Please send all of our invoices"))
    # All 220 of ACME's invoices are fetched and merged first: slow on a busy machine (the
    # capture's default bound allows for it).
    [reply] = await rig.capture.wait_for(1)
    assert attachment(reply) is None
    assert str(rig.link(reply).scope) == "all"
    await rig.settle(1)
    [event] = await rig.events()
    assert "attachment limit" in event.detail


# -- recorded mail from real clients ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sender", "scope"),
    [
        ("outlook-quoted-reply.eml", "Jane.Holloway@Hollyhock-Bakery.example", "unpaid"),
        ("windows-1252.eml", "rene@dubois-vins.example", "unpaid"),
        ("base64-body.eml", "zoe@cafe-zoe.example", "all"),
    ],
)
async def test_mail_from_real_clients_is_understood(
    make_rig: MakeRig, name: str, sender: str, scope: str
) -> None:
    rig = await make_rig(default_scope="all")
    await rig.send(scenario(name, {sender: "maggie@dunes.example"}))
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == ("maggie@dunes.example",)
    link = rig.link(reply)
    assert (link.customer_code, str(link.scope)) == ("DUNE01", scope)


async def test_an_html_only_request_for_an_invoice(rig: Rig) -> None:
    number = rig.sandbox.invoices("demo", "ACME01")[40].number
    raw = scenario("html-only.eml", {"priya@meadowlark-studio.example": ACME, "1312": str(number)})
    await rig.send(raw)
    [reply] = await rig.capture.wait_for(1)
    link = rig.link(reply)
    assert (link.scope.kind, link.scope.invoice) == ("invoice", number)


# -- what gets no reply -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sender", "rule"),
    [
        ("auto-reply.eml", "Jane.Holloway@Hollyhock-Bakery.example", "Auto-Submitted"),
        ("bounce-dsn.eml", "", "null reverse-path"),
        ("bounce-dsn.eml", "MAILER-DAEMON@mx.hollyhock-bakery.example", "report"),
        ("mailing-list.eml", "dev@patel-grocers.example", "list"),
    ],
)
async def test_automatic_and_list_mail_gets_no_reply(
    rig: Rig, name: str, sender: str, rule: str
) -> None:
    # Everything else about the message is a known customer's, so only the guard stops it.
    raw = scenario(name, {sender: ACME} if sender else {})
    await rig.send(raw, mail_from=ACME if sender else "")
    await rig.settle(1)
    await rig.send(request_mail())  # a real request behind it is still answered
    [ignored, answered] = await rig.settle(2)
    assert ignored.state == answered.state == "done"
    assert len(await rig.capture.wait_for(1)) == 1
    events = await rig.events()
    assert events[0].outcome == "ignored"
    assert rule.lower() in events[0].detail.lower()
    assert events[1].outcome == "replied"


async def test_an_unknown_sender_gets_no_reply(rig: Rig) -> None:
    stranger = "someone@elsewhere.example"
    await rig.send(request_mail(sender=stranger), mail_from=stranger)
    await rig.settle(1)
    await rig.send(request_mail())
    await rig.settle(2)
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (ACME,)
    events = await rig.events()
    assert (events[0].outcome, events[0].subject) == ("ignored", stranger)
    assert "unknown sender" in events[0].detail


async def test_an_unknown_sender_gets_the_neutral_reply_when_chosen(make_rig: MakeRig) -> None:
    rig = await make_rig(unknown_sender="neutral_reply")
    stranger = "someone@elsewhere.example"
    await rig.send(request_mail("send invoices", sender=stranger), mail_from=stranger)
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (stranger,)
    assert attachment(reply) is None
    text = body_text(reply)
    assert "/l/" not in text and "Acme" not in text
    assert reply.parsed()["Auto-Submitted"] == "auto-replied"


async def test_a_malformed_message_is_settled_and_the_queue_flows(rig: Rig) -> None:
    await rig.send((MAIL / "malformed-headers.eml").read_bytes().replace(b"\n", b"\r\n"))
    await rig.settle(1)
    await rig.send(request_mail())
    first, second = await rig.settle(2)
    # As the corpus pins it: nobody to answer, said with what was wrong.
    assert isinstance(first.outcome, Ignored) and first.state == "done"
    assert second.state == "done"
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (ACME,)
    events = await rig.events()
    assert (events[0].outcome, events[0].detail) == (
        "ignored",
        "no readable sender address (InvalidBase64PaddingDefect, no readable From address,"
        " unknown charset 'x-no-such-charset')",
    )


@both_stores
async def test_a_fourth_request_in_an_hour_gets_no_reply(rig: Rig) -> None:
    for _ in range(4):
        await rig.send(request_mail())
    settled = await rig.settle(4)
    assert [s.state for s in settled] == ["done"] * 4
    assert len(rig.capture.messages) == 3
    events = await rig.events()
    assert sorted(e.outcome for e in events) == ["ignored", "replied", "replied", "replied"]
    [refused] = [e for e in events if e.outcome == "ignored"]
    assert "rate limit" in refused.detail and "ACME01" in refused.subject


@both_stores
async def test_the_same_message_id_twice_is_answered_once(rig: Rig) -> None:
    raw = request_mail(message_id="<same@client.example>")
    await rig.send(raw)
    await rig.send(raw)
    await rig.settle(2)
    assert len(rig.capture.messages) == 1
    events = await rig.events()
    assert sorted(e.outcome for e in events) == ["ignored", "replied"]
    assert any("duplicate" in e.detail for e in events)


# -- the relay --------------------------------------------------------------------------


@both_stores
async def test_relay_down_then_up_sends_the_reply_once_later(rig: Rig) -> None:
    await rig.capture.close()
    await rig.send(request_mail())
    [deferred] = await rig.settle(1)
    assert deferred.state == "retry"
    [waiting] = await rig.core.store.spool.list(["retry"])
    port = rig.capture.port
    assert waiting.reason == f"relay unreachable: Connect call failed ('127.0.0.1', {port})"

    await rig.capture.start()
    [reply] = await rig.capture.wait_for(1)
    await rig.service.worker.wait_for(lambda s: s[-1].state == "done")
    assert reply.rcpt_tos == (ACME,)
    assert len(rig.capture.messages) == 1
    assert (await rig.core.store.spool.counts())["done"] == 1
    outcomes = [e.outcome for e in await rig.events()]
    assert outcomes[0] == "pending_retry" and outcomes[-1] == "replied"


@both_stores
async def test_a_request_deferred_more_often_than_a_thread_allows_is_still_answered(
    rig: Rig,
) -> None:
    # The customer is found, then KashFlow fails the invoice list: each try is deferred
    # after the rate limits were taken. Tried again, the message holds its own slots.
    rig.sandbox.faults.http_500 = True
    rig.sandbox.faults.operations = frozenset({"GetInvoicesForCustomer"})
    await rig.send(request_mail(message_id="<patient@client.example>"))
    tries = await rig.settle(MAX_REPLIES_PER_THREAD + 1)
    assert [s.state for s in tries] == ["retry"] * (MAX_REPLIES_PER_THREAD + 1)

    rig.sandbox.faults.clear()
    [reply] = await rig.capture.wait_for(1)
    assert reply.parsed()["In-Reply-To"] == "<patient@client.example>"
    await rig.service.worker.wait_for(lambda s: s[-1].state == "done")
    outcomes = [e.outcome for e in await rig.events()]
    assert outcomes == ["pending_retry"] * (MAX_REPLIES_PER_THREAD + 1) + ["replied"]


@both_stores
async def test_relay_refusing_for_good_parks_the_message_with_its_reason(rig: Rig) -> None:
    rig.capture.fail_with = (554, "5.7.1 Relaying denied")
    await rig.send(request_mail())
    [settled] = await rig.settle(1)
    assert settled.state == "parked"
    [parked] = await rig.core.store.spool.list(["parked"])
    assert "554" in parked.reason and "Relaying denied" in parked.reason
    [event] = await rig.events()
    assert event.outcome == "failed" and "554" in event.detail


# -- the request address follows the settings -------------------------------------------


async def test_turning_the_bot_off_refuses_its_address_at_once(rig: Rig) -> None:
    await rig.core.store.accounts.update("demo", enabled=False)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await rig.send(request_mail())
    await rig.core.store.accounts.update("demo", enabled=True)
    await rig.send(request_mail())
    assert len(await rig.capture.wait_for(1)) == 1


async def test_with_a_trusted_authserv_id_only_authenticated_mail_is_answered(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(trusted_authserv_id="mx.northwind.example")
    forged = request_mail(message_id="<forged@client.example>")
    dkim_pass = "dkim=pass header.d=acme-fab.example"
    spoofed_results = request_mail(
        message_id="<other-server@client.example>",
        extra=f"Authentication-Results: mx.elsewhere.example; {dkim_pass}\r\n",
    )
    genuine = request_mail(
        message_id="<genuine@client.example>",
        extra=f"Authentication-Results: mx.northwind.example; {dkim_pass}\r\n",
    )
    for raw in (forged, spoofed_results, genuine):
        await rig.send(raw)
    settled = await rig.settle(3)
    outcomes = {s.message_id: s.outcome for s in settled}
    assert isinstance(outcomes["<genuine@client.example>"], Replied)
    for refused in ("<forged@client.example>", "<other-server@client.example>"):
        outcome = outcomes[refused]
        assert isinstance(outcome, Ignored) and outcome.rule.startswith("unauthenticated")
    await rig.capture.wait_for(1)
    assert len(rig.capture.messages) == 1
    assert rig.capture.messages[0].parsed()["In-Reply-To"] == "<genuine@client.example>"


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (
            "Hello, send my stuff",
            'You can also ask for "all invoices", "unpaid invoices", a statement',
        ),
        (
            "Bonjour, pourriez-vous m'envoyer les documents dont nous avons parlé ? Merci",
            "Vous pouvez aussi demander « toutes les factures », « factures impayées »",
        ),
    ],
    ids=["english", "french"],
)
async def test_an_unrecognised_request_gets_the_default_and_says_what_can_be_asked(
    rig: Rig, body: str, hint: str
) -> None:
    await rig.send(request_mail(body, subject="Hello"))
    [reply] = await rig.capture.wait_for(1)

    assert str(rig.link(reply).scope) == "unpaid"  # the account's default
    text = " ".join(body_text(reply).split())
    assert hint in text


async def test_mail_accepted_for_an_address_is_answered_by_that_account_after_the_address_moves(
    make_rig: MakeRig, tmp_path: Path
) -> None:
    """The attack: mail accepted for one firm's address, the address then taken by another
    account before the worker reads it. The message stays the first firm's: answered
    from its books, in its words, through its relay, and never shown to the other."""
    rig = await make_rig(greeting="Dear client of Northwind,")
    accounts, spool = rig.core.store.accounts, rig.core.store.spool
    await rig.service.worker.stop()  # accepted now, read later
    await rig.send(request_mail(message_id="<moved@client.example>"))
    [entry] = await spool.list(account="demo")
    accepted = await spool.get(entry.id)
    assert accepted is not None and accepted.account == "demo"
    assert accepted.state == "queued"

    async with CaptureServer(tmp_path / "second-outbox") as second_relay:
        # The address changes hands before the worker runs.
        await accounts.update("demo", request_address="old-invoices@northwind.example")
        await accounts.set_bot_credentials("second", SECOND)
        await accounts.update(
            "second",
            enabled=True,
            request_address=REQUEST,
            relay_host="127.0.0.1",
            relay_port=second_relay.port,
            relay_security="none",
            greeting="Greetings from the other firm,",
        )
        assert await rig.service.accepts(REQUEST) == "second"
        rig.service.worker.start()

        [settled] = await rig.settle(1)
        assert isinstance(settled.outcome, Replied)
        [reply] = await rig.capture.wait_for(1)
        assert reply.rcpt_tos == (ACME,)
        assert body_text(reply).lstrip().startswith("Dear client of Northwind,")
        assert rig.link(reply).credentials.username == "demo"
        assert second_relay.messages == []
    # Listed under the first firm only: the other's bot page never shows it.
    assert [e.id for e in await spool.list(account="demo")] == [entry.id]
    assert await spool.list(account="second") == []
