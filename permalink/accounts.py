"""Per-account settings: the mail bot's configuration and its sealed secrets.

An *account* is one KashFlow account, named by its API username compared without regard
to case (:func:`account_key`); one deployment serves several, and every read here is by
account. The bot's settings (request address, scope, limits, relay, wording) are plain
columns; the two secrets it needs to act on its own — the relay password and its KashFlow
credentials — exist in the database only as blobs sealed by the server keyring, each bound
to its account and field, so a blob copied to another row or column does not open. They
never appear in :class:`BotSettings`; reading one is a separate, explicit call.

:mod:`permalink.sealed` lists these sealed columns with the others the state holds, and
seals them again when the server key is rotated.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from kashflow.models import Credentials
from permalink.db import Conflict, Conn, Database, Row, transaction
from permalink.keyring import Keyring, KeyringSource, keyring_source
from permalink.mail import Wording
from permalink.scopes import DEFAULT_SCOPES, DefaultScope

UnknownSender = Literal["ignore", "neutral_reply"]
Security = Literal["none", "starttls", "ssl"]

MB: Final = 1024 * 1024
MIN_ATTACHMENT_BYTES: Final = 100 * 1024
MAX_ATTACHMENT_BYTES: Final = 50 * MB
MAX_PER_CUSTOMER_LIMIT: Final = 1000
MAX_GLOBAL_LIMIT: Final = 10_000


class SettingError(ValueError):
    """A setting the accountant must correct; ``field`` names it (one of :data:`FIELDS`,
    or ``bot_credentials``) so a form can mark the field it came from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def account_key(username: str) -> str:
    """The key every table files an account under: its KashFlow username, lower-cased."""
    key = username.strip().lower() if isinstance(username, str) else ""
    if not key:
        raise ValueError("a KashFlow account username is required")
    return key


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The outgoing SMTP relay. The password is never here, only whether one is stored."""

    host: str = ""
    port: int = 587
    security: Security = "starttls"
    username: str = ""
    has_password: bool = False


@dataclass(frozen=True, slots=True)
class BotSettings:
    account: str
    enabled: bool = False
    request_address: str = ""
    default_scope: DefaultScope = "all"
    unknown_sender: UnknownSender = "ignore"
    per_customer_limit: int = 3
    global_limit: int = 60
    max_attachment_bytes: int = 10 * MB
    relay: RelaySettings = field(default_factory=RelaySettings)
    wording: Wording = field(default_factory=Wording)
    reply_from: str = ""
    has_bot_credentials: bool = False

    @property
    def sender(self) -> str:
        """The address replies come from: ``reply_from``, else the request address."""
        return self.reply_from or self.request_address


#: The names ``update`` accepts, which are also the table's plain columns.
FIELDS: Final = (
    "enabled",
    "request_address",
    "default_scope",
    "unknown_sender",
    "per_customer_limit",
    "global_limit",
    "max_attachment_bytes",
    "relay_host",
    "relay_port",
    "relay_security",
    "relay_username",
    "reply_from",
    "greeting",
    "intro",
    "sign_off",
)


#: Every sealed column, with the purpose its blobs are bound to (besides the account).
_SECRETS: Final = {"relay_password": "relay", "bot_credentials": "kashflow"}
_DUPLICATE_ADDRESS = "That request address is already used by another KashFlow account."

# -- validation ---------------------------------------------------------------------------

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _address(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"The {what} must be an email address.")
    text = value.strip()
    if not text:
        return ""
    local, at, domain = text.rpartition("@")
    if (
        not at
        or len(text) > 254
        or len(local) > 64
        or _LOCAL.fullmatch(local) is None
        or _HOST.fullmatch(domain) is None
        or domain.endswith(".")
    ):
        raise ValueError(f"The {what} {text!r} is not a valid email address.")
    return text


def _request_address(value: object) -> str:
    # Lower-cased because inbound mail is routed to an account by a case-blind lookup.
    return _address(value, "request address").lower()


def _reply_from(value: object) -> str:
    return _address(value, "reply-from address")


def _whole(value: object, what: str, low: int, high: int, unit: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise ValueError(f"The {what} must be a whole number from {low} to {high}{unit}.")
    return number


def _choice(options: tuple[str, ...], what: str) -> Callable[[object], object]:
    def clean(value: object) -> str:
        if value not in options:
            listed = " or ".join(repr(option) for option in options)
            raise ValueError(f"The {what} must be {listed}.")
        return str(value)

    return clean


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("Turning the bot on or off takes true or false.")
    return value


def _relay_host(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("The relay host must be a host name or an IP address.")
    host = value.strip().lower()
    if not host:
        return ""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if len(host) > 253 or _HOST.fullmatch(host) is None:
        raise ValueError(f"The relay host {host!r} is not a valid host name or IP address.")
    return host.rstrip(".")


def _text(what: str, limit: int, *, lines: bool) -> Callable[[object], object]:
    def clean(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"The {what} must be text.")
        text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not lines and "\n" in text:
            raise ValueError(f"The {what} must fit on one line.")
        if _CONTROL.search(text):
            raise ValueError(f"The {what} must be plain text, without control characters.")
        if len(text) > limit:
            raise ValueError(f"The {what} can be at most {limit} characters long.")
        return text

    return clean


def _relay_username(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("The relay username must be text.")
    name = value.strip()
    if _CONTROL.search(name) or "\n" in name or len(name) > 254:
        raise ValueError("The relay username must be one line of at most 254 characters.")
    return name


_CLEANERS: Final[dict[str, Callable[[object], object]]] = {
    "enabled": _enabled,
    "request_address": _request_address,
    "default_scope": _choice(DEFAULT_SCOPES, "default scope"),
    "unknown_sender": _choice(get_args(UnknownSender), "choice for unknown senders"),
    "per_customer_limit": lambda v: _whole(
        v, "per-customer limit", 1, MAX_PER_CUSTOMER_LIMIT, " replies per hour"
    ),
    "global_limit": lambda v: _whole(v, "overall limit", 1, MAX_GLOBAL_LIMIT, " replies per hour"),
    "max_attachment_bytes": lambda v: _whole(
        v, "attachment size limit", MIN_ATTACHMENT_BYTES, MAX_ATTACHMENT_BYTES, " bytes"
    ),
    "relay_host": _relay_host,
    "relay_port": lambda v: _whole(v, "relay port", 1, 65535, ""),
    "relay_security": _choice(get_args(Security), "relay security"),
    "relay_username": _relay_username,
    "reply_from": _reply_from,
    "greeting": _text("greeting", 200, lines=False),
    "intro": _text("introduction", 2000, lines=True),
    "sign_off": _text("sign-off", 500, lines=True),
}


def _check_together(values: dict[str, object], *, has_credentials: bool) -> None:
    per_customer = values["per_customer_limit"]
    overall = values["global_limit"]
    assert isinstance(per_customer, int) and isinstance(overall, int)
    if per_customer > overall:
        raise SettingError(
            "per_customer_limit", "The per-customer limit cannot be higher than the overall limit."
        )
    if not values["enabled"]:
        return
    if not values["request_address"]:
        raise SettingError("request_address", "Set a request address before turning the bot on.")
    if not values["relay_host"]:
        raise SettingError("relay_host", "Set the outgoing mail relay before turning the bot on.")
    if not has_credentials:
        raise SettingError(
            "bot_credentials", "Save the bot's KashFlow credentials before turning the bot on."
        )


def _clean(changes: dict[str, object]) -> dict[str, object]:
    return clean_fields(changes, _CLEANERS, "bot settings")


def clean_fields(
    changes: dict[str, object], cleaners: dict[str, Callable[[object], object]], what: str
) -> dict[str, object]:
    """Each value of ``changes`` through its field's cleaner; a wrong value raises
    :class:`SettingError` naming the field, an unknown field ``TypeError``."""
    unknown = sorted(set(changes) - set(cleaners))
    if unknown:
        raise TypeError(f"unknown {what}: " + ", ".join(unknown))
    clean: dict[str, object] = {}
    for name, value in changes.items():
        try:
            clean[name] = cleaners[name](value)
        except ValueError as error:
            raise SettingError(name, str(error)) from None
    return clean


# -- rows ---------------------------------------------------------------------------------


def _values(settings: BotSettings) -> dict[str, object]:
    return {
        "enabled": settings.enabled,
        "request_address": settings.request_address,
        "default_scope": settings.default_scope,
        "unknown_sender": settings.unknown_sender,
        "per_customer_limit": settings.per_customer_limit,
        "global_limit": settings.global_limit,
        "max_attachment_bytes": settings.max_attachment_bytes,
        "relay_host": settings.relay.host,
        "relay_port": settings.relay.port,
        "relay_security": settings.relay.security,
        "relay_username": settings.relay.username,
        "reply_from": settings.reply_from,
        "greeting": settings.wording.greeting,
        "intro": settings.wording.intro,
        "sign_off": settings.wording.sign_off,
    }


def _settings(account: str, row: Row | None) -> BotSettings:
    if row is None:
        return BotSettings(account=account)
    return BotSettings(
        account=account,
        enabled=bool(row["enabled"]),
        request_address=row["request_address"] or "",
        default_scope=row["default_scope"],
        unknown_sender=row["unknown_sender"],
        per_customer_limit=row["per_customer_limit"],
        global_limit=row["global_limit"],
        max_attachment_bytes=row["max_attachment_bytes"],
        relay=RelaySettings(
            host=row["relay_host"],
            port=row["relay_port"],
            security=row["relay_security"],
            username=row["relay_username"],
            has_password=row["relay_password"] is not None,
        ),
        wording=Wording(greeting=row["greeting"], intro=row["intro"], sign_off=row["sign_off"]),
        reply_from=row["reply_from"],
        has_bot_credentials=row["bot_credentials"] is not None,
    )


def _select(conn: Conn, key: str) -> Row | None:
    return conn.one("SELECT * FROM bot_settings WHERE account = ?", (key,))


def _write(conn: Conn, key: str, values: dict[str, object], now: int) -> None:
    """Insert or replace the account's plain columns, leaving its sealed secrets alone."""
    params = dict(values)
    # NULL, not '': UNIQUE must allow any number of accounts without a request address.
    params["request_address"] = values["request_address"] or None
    params["enabled"] = int(bool(values["enabled"]))
    columns = ", ".join(FIELDS)
    marks = ", ".join(f":{name}" for name in FIELDS)
    assignments = ", ".join(f"{name} = excluded.{name}" for name in FIELDS)
    conn.execute(
        f"INSERT INTO bot_settings (account, {columns}, updated) "  # noqa: S608 - fixed names
        f"VALUES (:account, {marks}, :updated) "
        f"ON CONFLICT (account) DO UPDATE SET {assignments}, updated = excluded.updated",
        {**params, "account": key, "updated": now},
    )


def sealed_purpose(key: str, column: str) -> bytes:
    """What a secret in ``column`` of account ``key`` is sealed for (:mod:`permalink.sealed`)."""
    return _purpose(key, _SECRETS[column])


def _purpose(key: str, name: str) -> bytes:
    # Field first (a fixed name), account last, NUL-separated: no two pairs collide.
    return b"permalink.accounts\x00" + name.encode("ascii") + b"\x00" + key.encode("utf-8")


class AccountSettings:
    """The bot's settings and sealed secrets, per KashFlow account."""

    def __init__(self, db: Database, keyring: Keyring | KeyringSource) -> None:
        self._db = db
        self._keys = keyring_source(keyring)

    @property
    def _keyring(self) -> Keyring:
        # Asked at every use: a reloaded key file takes effect for the next secret.
        return self._keys()

    async def get(self, account: str) -> BotSettings:
        """The account's settings (the defaults, bot off, if it never saved any)."""
        key = account_key(account)
        row = await self._db.run(lambda conn: _select(conn, key))
        return _settings(key, row)

    async def check(
        self, account: str, *, gaining_credentials: bool = False, **changes: object
    ) -> None:
        """Raise the :class:`SettingError` :meth:`update` would, saving nothing.

        A form that stores secrets as well checks first, so a refusal leaves everything as
        it was; ``gaining_credentials`` says the same form stores the bot's credentials.
        """
        key = account_key(account)
        clean = _clean(changes)
        current = await self.get(key)
        _check_together(
            {**_values(current), **clean},
            has_credentials=current.has_bot_credentials or gaining_credentials,
        )
        address = clean.get("request_address")
        if address and await self.account_for_address(str(address)) not in (None, key):
            raise SettingError("request_address", _DUPLICATE_ADDRESS)

    async def update(self, account: str, **changes: object) -> BotSettings:
        """Validate and save some settings (names from :data:`FIELDS`); returns the result.

        Raises ``ValueError`` with a message for the accountant when a value is wrong or
        the result would be inconsistent (e.g. the bot on without a request address).
        """
        key = account_key(account)
        clean = _clean(changes)
        now = int(time.time())

        def write(conn: Conn) -> BotSettings:
            with transaction(conn):
                current = _settings(key, _select(conn, key))
                merged = {**_values(current), **clean}
                _check_together(merged, has_credentials=current.has_bot_credentials)
                address = merged["request_address"]
                if (
                    address
                    and conn.execute(
                        "SELECT 1 FROM bot_settings WHERE request_address = ? AND account != ?",
                        (address, key),
                    ).fetchone()
                ):
                    raise SettingError("request_address", _DUPLICATE_ADDRESS)
                _write(conn, key, merged, now)
                return _settings(key, _select(conn, key))

        try:
            return await self._db.run(write)
        except Conflict:
            # Two accounts racing for one address: the UNIQUE index is the final word.
            raise SettingError("request_address", _DUPLICATE_ADDRESS) from None

    async def account_for_address(self, address: str) -> str | None:
        """The account whose request address this is (bot on or off), else None."""
        wanted = address.strip().strip("<>").strip().lower()
        if not wanted:
            return None

        def select(conn: Conn) -> str | None:
            value = conn.value(
                "SELECT account FROM bot_settings WHERE request_address = ?", (wanted,)
            )
            return None if value is None else str(value)

        return await self._db.run(select)

    async def accounts_with_bot_enabled(self) -> list[str]:
        def select(conn: Conn) -> list[str]:
            rows = conn.all("SELECT account FROM bot_settings WHERE enabled = 1 ORDER BY account")
            return [str(row["account"]) for row in rows]

        return await self._db.run(select)

    async def accounts_with_relay(self) -> list[str]:
        """Accounts with a relay saved, bot on or off: "email this link" sends through it."""

        def select(conn: Conn) -> list[str]:
            rows = conn.all(
                "SELECT account FROM bot_settings WHERE relay_host <> '' ORDER BY account"
            )
            return [str(row["account"]) for row in rows]

        return await self._db.run(select)

    # -- secrets --------------------------------------------------------------------------

    async def set_relay_password(self, account: str, password: str | None) -> None:
        """Seal and store the relay password; ``None`` or ``""`` removes it."""
        key = account_key(account)
        if password is not None and not isinstance(password, str):
            raise ValueError("The relay password must be text.")
        if password and len(password) > 1024:
            raise ValueError("The relay password can be at most 1024 characters long.")
        blob = (
            self._keyring.seal_secret(
                password.encode("utf-8"), purpose=_purpose(key, _SECRETS["relay_password"])
            )
            if password
            else None
        )
        await self._store_secret(key, "relay_password", blob, disable=False)

    async def relay_password(self, account: str) -> str | None:
        """The relay password, or None if none is stored.

        Raises :class:`permalink.keyring.SecretUnreadable` if the key that sealed it is gone.
        """
        key = account_key(account)
        blob = await self._load_secret(key, "relay_password")
        if blob is None:
            return None
        purpose = _purpose(key, _SECRETS["relay_password"])
        return self._keyring.open_secret(blob, purpose=purpose).decode("utf-8")

    async def set_bot_credentials(self, account: str, credentials: Credentials | None) -> None:
        """Seal and store the bot's KashFlow credentials; ``None`` removes them and turns
        the bot off, since it cannot act without them."""
        key = account_key(account)
        if credentials is None:
            await self._store_secret(key, "bot_credentials", None, disable=True)
            return
        if account_key(credentials.username) != key:
            # Another username would let this account's request address serve someone
            # else's customers.
            raise ValueError("The bot must use this account's own KashFlow username.")
        if not credentials.password:
            raise ValueError("The bot's KashFlow password is required.")
        plain = json.dumps({"username": credentials.username, "password": credentials.password})
        purpose = _purpose(key, _SECRETS["bot_credentials"])
        blob = self._keyring.seal_secret(plain.encode("utf-8"), purpose=purpose)
        await self._store_secret(key, "bot_credentials", blob, disable=False)

    async def bot_credentials(self, account: str) -> Credentials | None:
        """The bot's KashFlow credentials, or None if none are stored.

        Raises :class:`permalink.keyring.SecretUnreadable` if the key that sealed them is gone.
        """
        key = account_key(account)
        blob = await self._load_secret(key, "bot_credentials")
        if blob is None:
            return None
        plain = self._keyring.open_secret(blob, purpose=_purpose(key, _SECRETS["bot_credentials"]))
        data = json.loads(plain.decode("utf-8"))
        return Credentials(username=str(data["username"]), password=str(data["password"]))

    async def _store_secret(
        self, key: str, column: str, blob: bytes | None, *, disable: bool
    ) -> None:
        assert column in _SECRETS
        now = int(time.time())

        def write(conn: Conn) -> None:
            with transaction(conn):
                current = _settings(key, _select(conn, key))
                values = _values(current)
                if disable:
                    values["enabled"] = False
                _write(conn, key, values, now)
                conn.execute(
                    f"UPDATE bot_settings SET {column} = ? WHERE account = ?",  # noqa: S608
                    (blob, key),
                )

        await self._db.run(write)

    async def _load_secret(self, key: str, column: str) -> bytes | None:
        assert column in _SECRETS

        def select(conn: Conn) -> bytes | None:
            value = conn.value(
                f"SELECT {column} FROM bot_settings WHERE account = ?",  # noqa: S608
                (key,),
            )
            return None if value is None else bytes(value)

        return await self._db.run(select)


__all__ = [
    "FIELDS",
    "AccountSettings",
    "BotSettings",
    "RelaySettings",
    "Security",
    "SettingError",
    "UnknownSender",
    "Wording",
    "account_key",
    "sealed_purpose",
]
