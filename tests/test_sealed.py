"""Every sealed secret of the state, found, tried and sealed again under the current key.

What ``keys rotate`` relies on: afterwards the old key can go and no stored secret — relay
password, the bot's KashFlow credentials, IMAP password — stops opening. Runs on SQLite
and on PostgreSQL (the ``open_db`` fixture).
"""

from __future__ import annotations

from kashflow.models import Credentials
from permalink.accounts import AccountSettings
from permalink.keyring import Keyring
from permalink.mailboxes import Mailboxes
from permalink.sealed import SEALED, SealedSecrets
from tests.conftest import OpenDb


async def test_reseal_moves_every_stored_secret_to_the_current_key(open_db: OpenDb) -> None:
    db = open_db()
    old = Keyring.generate()
    accounts, mailboxes = AccountSettings(db, old), Mailboxes(db, old)
    await accounts.set_bot_credentials("acme", Credentials("acme", "kf-pass"))
    await accounts.set_relay_password("acme", "relay-pass")
    await mailboxes.set_password("acme", "imap-pass")
    # A secret no key of ours opens (sealed elsewhere) is reported, never "fixed".
    await AccountSettings(db, Keyring.generate(9)).set_relay_password("beta", "lost")
    rotated = old.rotated()
    secrets = SealedSecrets(db, rotated)

    done = await secrets.reseal()
    assert sorted(s.what for s in done.resealed) == [
        "acme's IMAP password",
        "acme's bot's KashFlow credentials",
        "acme's relay password",
    ]
    assert [s.what for s in done.unreadable] == ["beta's relay password"]
    assert (await secrets.reseal()).resealed == ()  # nothing left to do

    after = rotated.retired(old.current_id)
    assert await AccountSettings(db, after).relay_password("acme") == "relay-pass"
    assert await AccountSettings(db, after).bot_credentials("acme") == Credentials(
        "acme", "kf-pass"
    )
    assert await Mailboxes(db, after).password("acme") == "imap-pass"
    stored = {
        (s.account, s.name): (s.key_id, s.opens) for s in await SealedSecrets(db, after).stored()
    }
    assert stored == {
        ("acme", "bot_credentials"): (2, True),
        ("acme", "relay_password"): (2, True),
        ("acme", "imap_password"): (2, True),
        ("beta", "relay_password"): (9, False),
    }
    assert await SealedSecrets(db, after).unreadable("BETA") == frozenset({"relay_password"})
    assert {sealed.name for sealed in SEALED} == {
        "relay_password",
        "bot_credentials",
        "imap_password",
    }


async def test_a_secret_saved_again_meanwhile_is_left_as_saved(open_db: OpenDb) -> None:
    db = open_db()
    old = Keyring.generate()
    await AccountSettings(db, old).set_relay_password("acme", "first")
    rotated = old.rotated()
    secrets = SealedSecrets(db, rotated)
    [before] = await secrets._blobs(None)
    # Saved again from the settings page between the re-seal's read and its write.
    await AccountSettings(db, rotated).set_relay_password("acme", "second")
    assert not await secrets._swap(before[0], before[1], before[2], b"stale")
    assert await AccountSettings(db, rotated).relay_password("acme") == "second"
