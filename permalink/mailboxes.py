"""Per-account IMAP mailboxes the bot reads requests from, and which messages it took.

An account may have the bot read an IMAP mailbox (a Gmail or Microsoft 365 address, say)
as well as, or instead of, receiving mail by SMTP/LMTP. This module keeps, per account:

* the mailbox's settings: host, port, TLS mode, username, folder, and where handled
  messages go (another folder, or stay flagged in place). The password exists only sealed
  by the server keyring, bound to its account and field, like the relay's
  (:mod:`permalink.accounts`); it never appears in :class:`MailboxSettings`;
* a *lease*: any number of bot processes run the IMAP door, and the lease lets exactly one
  of them read a given mailbox at a time; another takes over once it runs out;
* the messages taken, keyed by the mailbox, its ``UIDVALIDITY`` and the message's ``UID``
  (RFC 3501 section 2.3.1.1: together they name one message for good).

Exactly once
------------
:meth:`Mailboxes.take` writes a message's key and its spool row (:func:`~permalink.spool.
insert_message`) in one transaction. A message whose key exists is never spooled again,
whichever process sees it and however often; a crash before the commit leaves neither,
so the message is taken on the next look. Only after the commit is the message moved or
flagged in the mailbox (:meth:`Mailboxes.marked` records that), so a crash in between
leaves a message that is spooled, unmarked, and marked on the next look, never retaken.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from permalink.accounts import account_key
from permalink.db import Conflict, Conn, Database, Row, transaction
from permalink.keyring import Keyring, KeyringSource, keyring_source
from permalink.spool import insert_message

Security = Literal["ssl", "starttls", "none"]
SECURITY_CHOICES: Final[tuple[Security, ...]] = get_args(Security)
DEFAULT_PORTS: Final[dict[str, int]] = {"ssl": 993, "starttls": 143, "none": 143}

#: The names :meth:`Mailboxes.update` takes (the table's plain columns).
FIELDS: Final = ("host", "port", "security", "username", "folder", "done_folder")

#: The longest IMAP password :meth:`Mailboxes.set_password` takes.
PASSWORD_LIMIT: Final = 1024

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PURPOSE = b"permalink.mailboxes\x00password\x00"


class MailboxError(ValueError):
    """A mailbox setting the accountant must change; ``field`` names it (one of
    :data:`FIELDS`, or ``"password"``) so the form can mark it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def password_purpose(key: str) -> bytes:
    """What an account's IMAP password is sealed for (see :mod:`permalink.sealed`)."""
    return _PURPOSE + key.encode()


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    """Where the bot reads an account's requests by IMAP. No password, only whether one
    is stored; ``status`` is what the reader last found (for the settings page)."""

    account: str
    host: str = ""
    port: int = 993
    security: Security = "ssl"
    username: str = ""
    folder: str = "INBOX"
    #: Where handled messages are moved; empty: they stay, flagged as handled.
    done_folder: str = ""
    has_password: bool = False
    updated: float = 0.0
    status: str = ""
    status_at: float | None = None

    @property
    def configured(self) -> bool:
        return bool(self.host and self.username and self.has_password)

    @property
    def identity(self) -> str:
        """The mailbox as its messages' keys name it: changing the server, the login or
        the folder makes it another mailbox."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


# -- validation ---------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("The IMAP host must be a host name or an IP address.")
    host = value.strip().lower()
    if not host:
        return ""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if len(host) > 253 or _HOST.fullmatch(host) is None:
        raise ValueError(f"The IMAP host {host!r} is not a valid host name or IP address.")
    return host.rstrip(".")


def _port(value: object) -> int:
    text = str(value).strip() if isinstance(value, int | str) else ""
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("The IMAP port must be a whole number from 1 to 65535.")
    return int(text)


def _security(value: object) -> str:
    if value not in SECURITY_CHOICES:
        raise ValueError("The IMAP encryption must be 'ssl', 'starttls' or 'none'.")
    return str(value)


def _line(what: str, limit: int) -> Callable[[object], str]:
    def clean(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"The {what} must be text.")
        text = value.strip()
        if _CONTROL.search(text) or len(text) > limit:
            raise ValueError(f"The {what} must be one line of at most {limit} characters.")
        return text

    return clean


_CLEANERS: Final[dict[str, Callable[[object], object]]] = {
    "host": _host,
    "port": _port,
    "security": _security,
    "username": _line("IMAP username", 254),
    "folder": _line("IMAP folder", 200),
    "done_folder": _line("folder for handled mail", 200),
}


def clean(changes: dict[str, object]) -> dict[str, object]:
    """Validated values of some :data:`FIELDS`; ``ValueError`` says what is wrong."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise TypeError("unknown mailbox settings: " + ", ".join(unknown))
    cleaned: dict[str, object] = {}
    for name, value in changes.items():
        try:
            cleaned[name] = _CLEANERS[name](value)
        except ValueError as error:
            raise MailboxError(name, str(error)) from None
    return cleaned


def _check_together(values: dict[str, object]) -> None:
    host = str(values["host"])
    if not host:
        return
    if not values["username"]:
        raise MailboxError("username", "Give the IMAP username the bot signs in with.")
    if not values["folder"]:
        raise MailboxError("folder", "Give the IMAP folder the requests arrive in (usually INBOX).")
    if str(values["done_folder"]).lower() == str(values["folder"]).lower():
        raise MailboxError(
            "done_folder", "Handled mail must go to another folder than the one read."
        )
    if values["security"] == "none" and not is_loopback(host):
        # The password would cross the network in the clear.
        raise MailboxError(
            "security",
            "Reading a mailbox without TLS is only allowed for a server on this machine: "
            "choose SSL/TLS or STARTTLS.",
        )


# -- rows ---------------------------------------------------------------------------------


def _settings(account: str, row: Row | None) -> MailboxSettings:
    if row is None:
        return MailboxSettings(account=account)
    return MailboxSettings(
        account=account,
        host=row["host"],
        port=int(row["port"]),
        security=row["security"],
        username=row["username"],
        folder=row["folder"],
        done_folder=row["done_folder"],
        has_password=row["password"] is not None,
        updated=float(row["updated"]),
        status=row["status"],
        status_at=row["status_at"],
    )


def _values(settings: MailboxSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in FIELDS}


def _select(conn: Conn, key: str) -> Row | None:
    return conn.one("SELECT * FROM mailboxes WHERE account = ?", (key,))


def _write(conn: Conn, key: str, values: dict[str, object], now: float) -> None:
    columns = ", ".join(FIELDS)
    marks = ", ".join(f":{name}" for name in FIELDS)
    assignments = ", ".join(f"{name} = excluded.{name}" for name in FIELDS)
    conn.execute(
        f"INSERT INTO mailboxes (account, {columns}, updated) "  # noqa: S608 - fixed names
        f"VALUES (:account, {marks}, :updated) "
        f"ON CONFLICT (account) DO UPDATE SET {assignments}, updated = excluded.updated",
        {**values, "account": key, "updated": now},
    )


class Mailboxes:
    """The IMAP mailboxes of every account, their leases and the messages taken."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring | KeyringSource,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._keys = keyring_source(keyring)
        self._clock = clock

    # -- settings -------------------------------------------------------------------------

    async def get(self, account: str) -> MailboxSettings:
        key = account_key(account)
        return _settings(key, await self._db.run(lambda conn: _select(conn, key)))

    async def check(self, account: str, **changes: object) -> None:
        """Raise what :meth:`update` would refuse, saving nothing: a form that saves other
        settings too checks its mailbox part first, so a refusal leaves everything as it
        was."""
        key = account_key(account)
        values = clean(changes)
        current = await self._db.run(lambda conn: _select(conn, key))
        _check_together({**_values(_settings(key, current)), **values})

    async def update(self, account: str, **changes: object) -> MailboxSettings:
        """Validate and save some settings; ``ValueError`` has a message for the accountant.

        An empty host means the bot reads no mailbox for this account.
        """
        key = account_key(account)
        values = clean(changes)
        now = self._clock()

        def write(conn: Conn) -> MailboxSettings:
            with transaction(conn):
                merged = {**_values(_settings(key, _select(conn, key))), **values}
                _check_together(merged)
                _write(conn, key, merged, now)
                return _settings(key, _select(conn, key))

        return await self._db.run(write)

    async def set_password(self, account: str, password: str | None) -> None:
        """Seal and store the IMAP password; ``None`` or ``""`` removes it."""
        key = account_key(account)
        if password is not None and not isinstance(password, str):
            raise MailboxError("password", "The IMAP password must be text.")
        if password and len(password) > PASSWORD_LIMIT:
            raise MailboxError(
                "password",
                f"The IMAP password can be at most {PASSWORD_LIMIT} characters long.",
            )
        blob = (
            self._keys().seal_secret(password.encode("utf-8"), purpose=password_purpose(key))
            if password
            else None
        )
        now = self._clock()

        def write(conn: Conn) -> None:
            with transaction(conn):
                _write(conn, key, _values(_settings(key, _select(conn, key))), now)
                conn.execute("UPDATE mailboxes SET password = ? WHERE account = ?", (blob, key))

        await self._db.run(write)

    async def password(self, account: str) -> str | None:
        """The IMAP password, or None. Raises :class:`permalink.keyring.SecretUnreadable`
        if the key that sealed it is gone."""
        key = account_key(account)

        def load(conn: Conn) -> bytes | None:
            value = conn.value("SELECT password FROM mailboxes WHERE account = ?", (key,))
            return None if value is None else bytes(value)

        blob = await self._db.run(load)
        if blob is None:
            return None
        return self._keys().open_secret(blob, purpose=password_purpose(key)).decode("utf-8")

    async def to_read(self) -> list[MailboxSettings]:
        """Every mailbox the bot should read now: configured, of an account whose bot is on."""

        def select(conn: Conn) -> list[MailboxSettings]:
            rows = conn.all(
                "SELECT m.* FROM mailboxes m JOIN bot_settings b ON b.account = m.account"
                " WHERE b.enabled = 1 AND m.host != '' AND m.username != ''"
                " AND m.password IS NOT NULL ORDER BY m.account"
            )
            return [_settings(str(row["account"]), row) for row in rows]

        return await self._db.run(select)

    async def record_status(self, account: str, status: str) -> None:
        """What the reader found last (a sentence for the settings page, no secrets)."""
        key, now = account_key(account), self._clock()

        def write(conn: Conn) -> None:
            conn.execute(
                "UPDATE mailboxes SET status = ?, status_at = ? WHERE account = ?",
                (status[:500], now, key),
            )

        await self._db.run(write)

    # -- leases ---------------------------------------------------------------------------

    async def claim(self, account: str, owner: str, lease_s: float) -> bool:
        """Take or renew ``owner``'s lease on the account's mailbox; False if another
        holder's lease is still running."""
        key, now = account_key(account), self._clock()

        def update(conn: Conn) -> int:
            return conn.execute(
                "UPDATE mailboxes SET lease_owner = ?, lease_until = ? WHERE account = ?"
                " AND (lease_owner = ? OR lease_until IS NULL OR lease_until < ?)",
                (owner, now + lease_s, key, owner, now),
            ).rowcount

        return await self._db.run(update) == 1

    async def release(self, account: str, owner: str) -> None:
        """Give the lease back at once (a reader stopping), if ``owner`` holds it."""
        key = account_key(account)

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE mailboxes SET lease_until = NULL WHERE account = ? AND lease_owner = ?",
                (key, owner),
            )

        await self._db.run(update)

    # -- messages -------------------------------------------------------------------------

    async def known(
        self, account: str, mailbox: str, uidvalidity: int, uids: Iterable[int]
    ) -> dict[int, bool]:
        """Of ``uids``, the ones already taken, each with whether it has been marked."""
        wanted = sorted(set(uids))
        if not wanted:
            return {}
        key = account_key(account)

        def select(conn: Conn) -> dict[int, bool]:
            rows = conn.all(
                "SELECT uid, marked FROM mailbox_messages WHERE account = ? AND mailbox = ?"
                " AND uidvalidity = ? AND uid >= ? AND uid <= ?",
                (key, mailbox, uidvalidity, wanted[0], wanted[-1]),
            )
            return {int(row["uid"]): bool(row["marked"]) for row in rows}

        found = await self._db.run(select)
        return {uid: marked for uid, marked in found.items() if uid in set(wanted)}

    async def take(
        self,
        account: str,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        *,
        raw: bytes | None,
        peer: str,
        mail_from: str,
        rcpt_tos: Iterable[str],
        message_id: str = "",
    ) -> int | None:
        """Spool one message under its key, once: returns the new spool id, or None when
        the key was taken before (by this process or another). ``raw`` None records the
        key without spooling anything (a message the bot will not read, e.g. too large)."""
        key, now = account_key(account), self._clock()
        rcpts = list(rcpt_tos)

        def insert(conn: Conn) -> int | None:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO mailbox_messages (account, mailbox, uidvalidity, uid, taken_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, mailbox, uidvalidity, uid, now),
                )
                if raw is None:
                    return None
                spool_id = insert_message(
                    conn,
                    now,
                    peer=peer,
                    mail_from=mail_from,
                    rcpt_tos=rcpts,
                    raw=raw,
                    message_id=message_id,
                    account=key,
                )
                conn.execute(
                    "UPDATE mailbox_messages SET spool_id = ? WHERE account = ? AND mailbox = ?"
                    " AND uidvalidity = ? AND uid = ?",
                    (spool_id, key, mailbox, uidvalidity, uid),
                )
                return spool_id

        try:
            return await self._db.run(insert)
        except Conflict:
            return None  # taken before: the key is the final word

    async def marked(self, account: str, mailbox: str, uidvalidity: int, uid: int) -> None:
        """The message was moved or flagged in the mailbox."""
        key = account_key(account)

        def update(conn: Conn) -> None:
            conn.execute(
                "UPDATE mailbox_messages SET marked = 1 WHERE account = ? AND mailbox = ?"
                " AND uidvalidity = ? AND uid = ?",
                (key, mailbox, uidvalidity, uid),
            )

        await self._db.run(update)

    async def prune(self, taken_before: float) -> int:
        """Forget keys of messages taken before ``taken_before`` (the reader never looks
        at messages that old again, see ``bot.mailbox.LOOK_BACK_DAYS``)."""

        def delete(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM mailbox_messages WHERE taken_at < ?", (taken_before,)
            ).rowcount

        return await self._db.run(delete)


__all__ = [
    "DEFAULT_PORTS",
    "FIELDS",
    "PASSWORD_LIMIT",
    "SECURITY_CHOICES",
    "MailboxError",
    "MailboxSettings",
    "Mailboxes",
    "Security",
    "clean",
    "is_loopback",
    "password_purpose",
]
