"""Per-account bot settings: validation messages, routing by address, sealed secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kashflow.models import Credentials
from permalink.accounts import AccountSettings, BotSettings, account_key
from permalink.db import Database
from permalink.keyring import Keyring, SecretUnreadable
from tests.conftest import OpenDb

RELAY_PASSWORD = "relay-Pa55word-quokka"
KASHFLOW_PASSWORD = "kf-Secret-wombat-9931"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "server.keys"
    Keyring.create(path)
    return path


@pytest.fixture
def settings(open_db: OpenDb, key_file: Path) -> AccountSettings:
    return AccountSettings(open_db(), Keyring.load(key_file))


async def ready_bot(settings: AccountSettings, account: str, address: str) -> BotSettings:
    """An account with everything the bot needs, switched on."""
    await settings.set_bot_credentials(account, Credentials(account, KASHFLOW_PASSWORD))
    return await settings.update(
        account,
        request_address=address,
        relay_host="smtp.example.com",
        relay_port=587,
        relay_security="starttls",
        relay_username="mailer",
        enabled=True,
    )


def state_bytes(tmp_path: Path, db: Database) -> bytes:
    """Everything the state holds: SQLite's files (WAL included: recent writes sit in the
    -wal file until a checkpoint), or every value of every settings row on PostgreSQL."""
    if db.dialect.name == "sqlite":
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("state.sqlite3*")))
    rows = db.call(lambda conn: conn.all("SELECT * FROM bot_settings"))
    values = [v for row in rows for v in row.values()]
    return b"\0".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in values
    )


def test_account_key_is_the_lower_cased_username() -> None:
    assert account_key("  Acme.Ltd ") == "acme.ltd"
    with pytest.raises(ValueError, match="username is required"):
        account_key("   ")


async def test_an_account_without_settings_gets_the_defaults_with_the_bot_off(
    settings: AccountSettings,
) -> None:
    bot = await settings.get("Acme")
    assert bot == BotSettings(account="acme")
    assert not bot.enabled
    assert (bot.per_customer_limit, bot.global_limit) == (3, 60)
    assert bot.max_attachment_bytes == 10 * 1024 * 1024
    assert bot.default_scope == "all"
    assert bot.unknown_sender == "ignore"
    assert not bot.relay.has_password and not bot.has_bot_credentials
    assert await settings.accounts_with_bot_enabled() == []


async def test_update_saves_and_returns_the_new_settings(settings: AccountSettings) -> None:
    bot = await settings.update(
        "acme",
        request_address="Invoices@Acme.Example",
        reply_from="accounts@acme.example",
        default_scope="unpaid",
        unknown_sender="neutral_reply",
        per_customer_limit="5",
        global_limit=100,
        max_attachment_bytes=5 * 1024 * 1024,
        relay_host="SMTP.Example.com",
        relay_port=465,
        relay_security="ssl",
        relay_username="mailer@acme.example",
        greeting="Dear client,",
        intro="Your invoices:\r\nsee below.",
        sign_off="Thanks,\nAcme accounts",
    )

    assert bot == await settings.get("ACME")
    assert bot.request_address == "invoices@acme.example"
    assert bot.reply_from == "accounts@acme.example"
    assert bot.sender == "accounts@acme.example"
    assert (bot.default_scope, bot.unknown_sender) == ("unpaid", "neutral_reply")
    assert (bot.per_customer_limit, bot.global_limit) == (5, 100)
    assert bot.relay.host == "smtp.example.com"
    assert (bot.relay.port, bot.relay.security, bot.relay.username) == (
        465,
        "ssl",
        "mailer@acme.example",
    )
    assert bot.wording.intro == "Your invoices:\nsee below."
    assert bot.wording.sign_off == "Thanks,\nAcme accounts"


async def test_a_partial_update_keeps_the_other_settings(settings: AccountSettings) -> None:
    await settings.update("acme", request_address="invoices@acme.example", global_limit=80)
    bot = await settings.update("acme", greeting="Hi,")
    assert bot.request_address == "invoices@acme.example"
    assert bot.global_limit == 80
    assert bot.wording.greeting == "Hi,"
    assert bot.sender == "invoices@acme.example"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"request_address": "invoices"}, "The request address 'invoices' is not a valid email"),
        ({"request_address": "a b@example.com"}, "not a valid email address"),
        ({"request_address": "x@-bad-.example"}, "not a valid email address"),
        ({"reply_from": "Acme <a@example.com>"}, "The reply-from address"),
        ({"relay_port": 0}, "The relay port must be a whole number from 1 to 65535"),
        ({"relay_port": 70000}, "from 1 to 65535"),
        ({"relay_port": "smtp"}, "relay port"),
        ({"relay_port": True}, "relay port"),
        ({"relay_security": "tls"}, "The relay security must be 'none' or 'starttls' or 'ssl'"),
        ({"relay_host": "smtp example com"}, "not a valid host name"),
        ({"default_scope": "overdue"}, "The default scope must be 'all' or 'unpaid'"),
        ({"unknown_sender": "bounce"}, "unknown senders"),
        ({"per_customer_limit": 0}, "per-customer limit must be a whole number from 1"),
        ({"global_limit": 2, "per_customer_limit": 3}, "cannot be higher than the overall"),
        ({"max_attachment_bytes": 10}, "attachment size limit"),
        ({"greeting": "Hello\nthere"}, "The greeting must fit on one line"),
        ({"intro": "x" * 2001}, "at most 2000 characters"),
        ({"sign_off": "bye\x07"}, "without control characters"),
        ({"enabled": "yes"}, "true or false"),
        ({"enabled": True}, "Set a request address before turning the bot on"),
    ],
)
async def test_bad_values_are_refused_with_a_clear_message(
    settings: AccountSettings, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await settings.update("acme", **changes)
    assert await settings.get("acme") == BotSettings(account="acme")


async def test_unknown_setting_names_are_a_programming_error(settings: AccountSettings) -> None:
    with pytest.raises(TypeError, match="relay_pasword"):
        await settings.update("acme", relay_pasword="x")


async def test_the_bot_can_only_be_turned_on_when_it_can_work(settings: AccountSettings) -> None:
    await settings.update("acme", request_address="invoices@acme.example")
    with pytest.raises(ValueError, match="Set the outgoing mail relay"):
        await settings.update("acme", enabled=True)
    await settings.update("acme", relay_host="127.0.0.1")
    with pytest.raises(ValueError, match="Save the bot's KashFlow credentials"):
        await settings.update("acme", enabled=True)
    await settings.set_bot_credentials("acme", Credentials("ACME", KASHFLOW_PASSWORD))

    bot = await settings.update("acme", enabled=True)

    assert bot.enabled
    assert await settings.accounts_with_bot_enabled() == ["acme"]
    with pytest.raises(ValueError, match="Set a request address"):
        await settings.update("acme", request_address="")


async def test_clearing_the_bot_credentials_turns_the_bot_off(settings: AccountSettings) -> None:
    await ready_bot(settings, "acme", "invoices@acme.example")

    await settings.set_bot_credentials("acme", None)

    bot = await settings.get("acme")
    assert not bot.enabled and not bot.has_bot_credentials
    assert await settings.bot_credentials("acme") is None
    assert await settings.accounts_with_bot_enabled() == []


async def test_a_request_address_belongs_to_one_account_only(settings: AccountSettings) -> None:
    await settings.update("acme", request_address="invoices@shared.example")

    with pytest.raises(ValueError, match="already used by another KashFlow account") as caught:
        await settings.update("beta", request_address="INVOICES@shared.example")

    assert "acme" not in str(caught.value)
    assert (await settings.get("beta")).request_address == ""
    # Saving one's own address again is not a clash, and unset addresses never clash.
    await settings.update("acme", request_address="invoices@shared.example")
    await settings.update("gamma", greeting="Hi")
    await settings.update("delta", greeting="Hello")


async def test_inbound_mail_is_routed_by_request_address(settings: AccountSettings) -> None:
    await settings.update("acme", request_address="invoices@acme.example")
    await settings.update("beta", request_address="bills@beta.example")

    assert await settings.account_for_address("Invoices@ACME.example") == "acme"
    assert await settings.account_for_address("<bills@beta.example>") == "beta"
    assert await settings.account_for_address("nobody@acme.example") is None
    assert await settings.account_for_address("") is None


async def test_secrets_are_never_in_the_settings_object(settings: AccountSettings) -> None:
    await settings.set_relay_password("acme", RELAY_PASSWORD)
    bot = await ready_bot(settings, "acme", "invoices@acme.example")

    assert bot.relay.has_password and bot.has_bot_credentials
    shown = repr(bot) + repr(dataclasses.asdict(bot))
    assert RELAY_PASSWORD not in shown
    assert KASHFLOW_PASSWORD not in shown


async def test_secrets_round_trip_and_are_only_sealed_on_disk(
    tmp_path: Path, open_db: OpenDb, key_file: Path
) -> None:
    db = open_db()
    settings = AccountSettings(db, Keyring.load(key_file))
    await settings.set_relay_password("acme", RELAY_PASSWORD)
    await ready_bot(settings, "acme", "invoices@acme.example")

    assert await settings.relay_password("acme") == RELAY_PASSWORD
    assert await settings.bot_credentials("acme") == Credentials("acme", KASHFLOW_PASSWORD)
    raw = state_bytes(tmp_path, db)
    assert b"invoices@acme.example" in raw  # the check does see the table's contents
    for secret in (RELAY_PASSWORD, KASHFLOW_PASSWORD):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw

    # After a restart with the key file, the secrets open again.
    db = open_db()
    restarted = AccountSettings(db, Keyring.load(key_file))
    assert await restarted.relay_password("ACME") == RELAY_PASSWORD
    creds = await restarted.bot_credentials("acme")
    assert creds is not None and creds.password == KASHFLOW_PASSWORD
    assert await restarted.accounts_with_bot_enabled() == ["acme"]
    assert RELAY_PASSWORD.encode() not in state_bytes(tmp_path, db)


async def test_without_the_right_key_the_secrets_do_not_open(
    open_db: OpenDb, settings: AccountSettings
) -> None:
    await settings.set_relay_password("acme", RELAY_PASSWORD)

    other_key = AccountSettings(open_db(), Keyring.generate())

    with pytest.raises(SecretUnreadable) as caught:
        await other_key.relay_password("acme")
    assert RELAY_PASSWORD not in str(caught.value)


async def test_a_sealed_secret_copied_to_another_account_does_not_open(
    open_db: OpenDb, key_file: Path
) -> None:
    db = open_db()
    settings = AccountSettings(db, Keyring.load(key_file))
    await settings.set_relay_password("acme", RELAY_PASSWORD)
    await settings.update("beta", greeting="Hi")

    # Failure injection: someone with write access to the database moves the blob.
    db.call(
        lambda conn: conn.execute(
            "UPDATE bot_settings SET relay_password = "
            "(SELECT relay_password FROM bot_settings WHERE account = 'acme'), "
            "bot_credentials = (SELECT relay_password FROM bot_settings WHERE account = 'acme') "
            "WHERE account = 'beta'"
        )
    )

    with pytest.raises(SecretUnreadable):
        await settings.relay_password("beta")
    with pytest.raises(SecretUnreadable):
        await settings.bot_credentials("beta")


async def test_accounts_cannot_read_each_others_secrets(settings: AccountSettings) -> None:
    await settings.set_relay_password("acme", RELAY_PASSWORD)
    await settings.set_bot_credentials("acme", Credentials("acme", KASHFLOW_PASSWORD))

    assert await settings.relay_password("beta") is None
    assert await settings.bot_credentials("beta") is None
    beta = await settings.get("beta")
    assert not beta.relay.has_password and not beta.has_bot_credentials


async def test_the_bot_must_use_its_own_accounts_username(settings: AccountSettings) -> None:
    with pytest.raises(ValueError, match="this account's own KashFlow username"):
        await settings.set_bot_credentials("acme", Credentials("beta", KASHFLOW_PASSWORD))
    with pytest.raises(ValueError, match="password is required"):
        await settings.set_bot_credentials("acme", Credentials("acme", ""))
    assert not (await settings.get("acme")).has_bot_credentials


async def test_removing_the_relay_password(settings: AccountSettings) -> None:
    await settings.set_relay_password("acme", RELAY_PASSWORD)
    await settings.set_relay_password("acme", None)
    assert await settings.relay_password("acme") is None
    assert not (await settings.get("acme")).relay.has_password


async def test_only_enabled_accounts_are_listed_for_the_bot(settings: AccountSettings) -> None:
    await ready_bot(settings, "beta", "bills@beta.example")
    await ready_bot(settings, "acme", "invoices@acme.example")
    await settings.update("gamma", request_address="post@gamma.example")
    await settings.update("beta", enabled=False)

    assert await settings.accounts_with_bot_enabled() == ["acme"]
