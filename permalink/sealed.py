"""Every secret the state keeps sealed, where each lives, and sealing them all again.

The state holds a few secrets the bot needs to act on its own, each only as a blob sealed
by the server keyring and bound to its account and use: an account's relay password and
the bot's KashFlow credentials (:mod:`permalink.accounts`), and its IMAP mailbox password
(:mod:`permalink.mailboxes`). :data:`SEALED` lists them; a new sealed column is one more
entry there, and is then re-sealed on rotation, reported by ``check`` and ``keys list``,
and shown truthfully on the bot page.

:meth:`SealedSecrets.reseal` seals every stored secret not under the current key again,
under it — what ``keys rotate`` does, so that retiring the old key breaks none of them.
Each blob's envelope names the key that sealed it (:func:`permalink.keyring.sealed_with`),
so which key a secret needs is read without opening it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from permalink.accounts import sealed_purpose
from permalink.db import Conn, Database
from permalink.keyring import Keyring, KeyringSource, SecretUnreadable, keyring_source, sealed_with
from permalink.mailboxes import password_purpose


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """One column holding sealed secrets, one row per account."""

    #: How pages and commands refer to it (``"relay_password"``).
    name: str
    table: str
    column: str
    #: What the secret of an account (its key) is sealed for.
    purpose: Callable[[str], bytes]
    #: How an operator or an accountant is told of it.
    words: str


SEALED: Final = (
    SealedColumn(
        "relay_password",
        "bot_settings",
        "relay_password",
        lambda key: sealed_purpose(key, "relay_password"),
        "relay password",
    ),
    SealedColumn(
        "bot_credentials",
        "bot_settings",
        "bot_credentials",
        lambda key: sealed_purpose(key, "bot_credentials"),
        "bot's KashFlow credentials",
    ),
    SealedColumn("imap_password", "mailboxes", "password", password_purpose, "IMAP password"),
)


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One stored secret: whose, which, the key that sealed it, and whether it opens."""

    account: str
    sealed: SealedColumn
    key_id: int | None
    opens: bool

    @property
    def name(self) -> str:
        return self.sealed.name

    @property
    def what(self) -> str:
        return f"{self.account}'s {self.sealed.words}"


@dataclass(frozen=True, slots=True)
class Resealed:
    """What :meth:`SealedSecrets.reseal` did."""

    resealed: tuple[StoredSecret, ...]
    #: Secrets no key of the keyring opens: they must be entered again.
    unreadable: tuple[StoredSecret, ...]


class SealedSecrets:
    """The sealed secrets of one database, seen through the server keyring."""

    def __init__(self, db: Database, keyring: Keyring | KeyringSource) -> None:
        self._db = db
        self._keys = keyring_source(keyring)

    async def stored(self, *, account: str | None = None) -> list[StoredSecret]:
        """Every sealed secret stored (of ``account``, when given), tried with the keyring."""
        keyring = self._keys()
        return [
            _inspect(keyring, key, sealed, blob) for key, sealed, blob in await self._blobs(account)
        ]

    async def unreadable(self, account: str) -> frozenset[str]:
        """The names of the account's stored secrets the server key no longer opens."""
        stored = await self.stored(account=account.strip().lower())
        return frozenset(secret.name for secret in stored if not secret.opens)

    async def reseal(self) -> Resealed:
        """Seal every stored secret not under the current key again, under it.

        A secret saved again meanwhile (from the settings page) is left as it was saved:
        it is under the current key already.
        """
        keyring = self._keys()
        resealed: list[StoredSecret] = []
        unreadable: list[StoredSecret] = []
        for key, sealed, blob in await self._blobs(None):
            secret = _inspect(keyring, key, sealed, blob)
            if not secret.opens:
                unreadable.append(secret)
                continue
            if secret.key_id == keyring.current_id:
                continue
            purpose = sealed.purpose(key)
            fresh = keyring.seal_secret(keyring.open_secret(blob, purpose=purpose), purpose=purpose)
            if await self._swap(key, sealed, blob, fresh):
                resealed.append(secret)
        return Resealed(tuple(resealed), tuple(unreadable))

    async def _blobs(self, account: str | None) -> list[tuple[str, SealedColumn, bytes]]:
        def select(conn: Conn) -> list[tuple[str, SealedColumn, bytes]]:
            found = []
            for sealed in SEALED:
                sql = (
                    f"SELECT account, {sealed.column} AS blob FROM {sealed.table}"  # noqa: S608
                    f" WHERE {sealed.column} IS NOT NULL"
                )
                params: tuple[object, ...] = ()
                if account is not None:
                    sql += " AND account = ?"
                    params = (account,)
                for row in conn.all(sql + " ORDER BY account", params):
                    found.append((str(row["account"]), sealed, bytes(row["blob"])))
            return found

        return await self._db.run(select)

    async def _swap(self, key: str, sealed: SealedColumn, old: bytes, new: bytes) -> bool:
        # Compare-and-set: a secret saved again since it was read is not overwritten.
        sql = (
            f"UPDATE {sealed.table} SET {sealed.column} = ?"  # noqa: S608 - fixed names
            f" WHERE account = ? AND {sealed.column} = ?"
        )

        def update(conn: Conn) -> int:
            return conn.execute(sql, (new, key, old)).rowcount

        return await self._db.run(update) == 1


def _inspect(keyring: Keyring, key: str, sealed: SealedColumn, blob: bytes) -> StoredSecret:
    try:
        keyring.open_secret(blob, purpose=sealed.purpose(key))
    except SecretUnreadable:
        opens = False
    else:
        opens = True
    return StoredSecret(key, sealed, sealed_with(blob), opens)


__all__ = ["SEALED", "Resealed", "SealedColumn", "SealedSecrets", "StoredSecret"]
