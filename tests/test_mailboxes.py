"""The IMAP mailboxes' state, on SQLite and PostgreSQL: settings, the sealed password,
the lease that lets one process read a mailbox, and each message taken exactly once."""

from __future__ import annotations

import asyncio

import pytest

from kashflow.models import Credentials
from permalink.db import Database
from permalink.keyring import Keyring
from permalink.store import SqlStore
from tests.conftest import OpenDb

PASSWORD = "imap-Secret-platypus-77"
KEY = ("invoices@imap.example.com:993/INBOX", 1_700_000_000)


@pytest.fixture
def store(open_db: OpenDb) -> SqlStore:
    return SqlStore(open_db(), Keyring.generate())


async def readable(store: SqlStore, account: str = "demo") -> None:
    """A mailbox the bot should read: configured, the account's bot on."""
    await store.accounts.set_bot_credentials(account, Credentials(account, "kf-pass"))
    await store.accounts.update(
        account, request_address=f"invoices@{account}.example", relay_host="smtp.example.com",
        enabled=True,
    )  # fmt: skip
    await store.mailboxes.set_password(account, PASSWORD)
    await store.mailboxes.update(
        account, host="imap.example.com", port="993", security="ssl", username="invoices"
    )


async def test_settings_are_validated_with_a_sentence_for_the_accountant(store: SqlStore) -> None:
    mailboxes = store.mailboxes
    cases = {
        "is not a valid host name": dict(host="imap example com", username="u"),
        "port must be a whole number": dict(host="imap.example.com", port="99999"),
        "only allowed for a server on this machine": dict(
            host="imap.example.com", security="none", username="u", port="143"
        ),
        "Give the IMAP username": dict(host="imap.example.com", username=""),
        "another folder than the one read": dict(
            host="imap.example.com", username="u", done_folder="inbox"
        ),
    }
    for words, changes in cases.items():
        with pytest.raises(ValueError, match=words):
            await mailboxes.update("demo", **changes)
    assert (await mailboxes.get("demo")).host == ""  # nothing half-saved
    local = await mailboxes.update("demo", host="127.0.0.1", security="none", username="u")
    assert local.security == "none" and local.port == 993 and local.folder == "INBOX"


async def test_the_password_is_sealed_and_never_in_the_settings(
    store: SqlStore, open_db: OpenDb
) -> None:
    await readable(store)
    settings = await store.mailboxes.get("DEMO")

    assert settings.has_password and settings.configured
    assert PASSWORD not in repr(settings)
    assert await store.mailboxes.password("demo") == PASSWORD
    db: Database = store.db
    raw = await db.run(lambda conn: conn.value("SELECT password FROM mailboxes"))
    assert PASSWORD.encode() not in bytes(raw)
    await store.mailboxes.set_password("demo", None)
    assert await store.mailboxes.password("demo") is None
    assert not (await store.mailboxes.get("demo")).configured


async def test_only_mailboxes_of_accounts_whose_bot_is_on_are_read(store: SqlStore) -> None:
    await readable(store, "demo")
    await readable(store, "second")
    await store.accounts.update("second", enabled=False)

    assert [m.account for m in await store.mailboxes.to_read()] == ["demo"]


async def test_one_process_holds_a_mailbox_until_its_lease_runs_out(
    open_db: OpenDb,
) -> None:
    now = [1000.0]
    store = SqlStore(open_db(), Keyring.generate(), clock=lambda: now[0])
    await readable(store)
    mailboxes = store.mailboxes

    assert await mailboxes.claim("demo", "bot-a", lease_s=10)
    assert not await mailboxes.claim("demo", "bot-b", lease_s=10)
    now[0] += 5
    assert await mailboxes.claim("demo", "bot-a", lease_s=10)  # renewed
    now[0] += 9
    assert not await mailboxes.claim("demo", "bot-b", lease_s=10)
    now[0] += 2  # bot-a stopped renewing: its lease ran out
    assert await mailboxes.claim("demo", "bot-b", lease_s=10)
    await mailboxes.release("demo", "bot-a")  # not bot-a's any more: no effect
    assert not await mailboxes.claim("demo", "bot-a", lease_s=10)
    await mailboxes.release("demo", "bot-b")
    assert await mailboxes.claim("demo", "bot-a", lease_s=10)


async def test_a_message_is_spooled_once_however_many_readers_race_for_it(
    store: SqlStore,
) -> None:
    mailboxes = store.mailboxes
    raw = b"From: a@client.example\r\nMessage-ID: <m1@client.example>\r\n\r\nmy invoices\r\n"

    async def take(uid: int) -> int | None:
        return await mailboxes.take(
            "demo", *KEY, uid, raw=raw, peer="imap:imap.example.com",
            mail_from="a@client.example", rcpt_tos=["invoices@demo.example"],
            message_id="<m1@client.example>",
        )  # fmt: skip

    results = await asyncio.gather(*(take(7) for _ in range(6)))
    spooled = [r for r in results if r is not None]
    assert len(spooled) == 1
    message = await store.spool.get(spooled[0])
    assert message is not None and message.raw == raw and message.account == "demo"
    assert message.mail_from == "a@client.example"
    assert await store.spool.counts() == {
        "queued": 1, "working": 0, "done": 0, "parked": 0, "retry": 0
    }  # fmt: skip
    assert await mailboxes.known("demo", *KEY, [6, 7, 8]) == {7: False}
    await mailboxes.marked("demo", *KEY, 7)
    assert await mailboxes.known("demo", *KEY, [7]) == {7: True}
    # Another UIDVALIDITY is another message altogether (the folder was recreated).
    assert await mailboxes.known("demo", KEY[0], KEY[1] + 1, [7]) == {}


async def test_a_message_left_unread_is_recorded_without_spooling(store: SqlStore) -> None:
    taken = await store.mailboxes.take(
        "demo", *KEY, 9, raw=None, peer="imap:x", mail_from="", rcpt_tos=[]
    )

    assert taken is None
    assert await store.mailboxes.known("demo", *KEY, [9]) == {9: False}
    assert sum((await store.spool.counts()).values()) == 0
