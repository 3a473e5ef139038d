"""Permalinks: what a link grants (``Link``) and its sealed, URL-safe token.

A token is the base64url (no padding) form of a keyring envelope (see
:mod:`permalink.keyring`) sealed for the purpose ``PURPOSE``. Its plaintext is a compact
binary record, never pickle::

    scope kind (1 byte: 0 all, 1 unpaid, 2 one invoice, 3 several) | link id (8 bytes)
    | varint issued | varint expiry (0 none, else expires - issued + 1)
    | varint customer id | [kind 2: varint invoice number]
    | [kind 3: varint count, then that many varint invoice numbers]
    | string customer code | string username | string password

where a varint is unsigned LEB128 and a string is a varint byte length then UTF-8. A
typical link (8-character username, 16-character password, 6-character code, 30-day
expiry, 4-digit customer id) seals to 83 bytes: 111 token characters.

Every way a token can fail to open raises the one :class:`InvalidLink`, whose message
never says why; ``reason`` keeps the why for metrics and never holds token bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from kashflow.models import Credentials
from permalink.keyring import OVERHEAD, Keyring, SecretUnreadable, UnreadableReason
from permalink.scopes import MAX_KASHFLOW_ID, Scope

#: Associated data binding an envelope to being a link (not a stored secret).
PURPOSE = b"kashflow-permalink/link/v1"
#: Longest token accepted or minted; anything longer is refused before decoding.
MAX_TOKEN_CHARS = 1024
_MAX_SEALED_BYTES = MAX_TOKEN_CHARS * 3 // 4
_LINK_ID_BYTES = 8
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]*")

InvalidReason = Literal[
    "too_long",
    "malformed",
    "short",
    "version",
    "unknown_key",
    "tag",
    "payload",
    "expired",
    "revoked",
]

# Scope kinds in the token; one invoice keeps its own code so older tokens still open.
_ALL, _UNPAID, _ONE_INVOICE, _SEVERAL_INVOICES = 0, 1, 2, 3


class InvalidLink(Exception):
    """A token did not open. The message is the same whatever the reason."""

    def __init__(self, reason: InvalidReason) -> None:
        super().__init__("invalid link")
        self.reason: InvalidReason = reason


@dataclass(frozen=True, slots=True)
class Link:
    """What a permalink grants: one customer's invoices in one KashFlow account.

    ``repr`` shows the username but never the password (``Credentials`` hides it).
    """

    credentials: Credentials
    customer_id: int
    customer_code: str
    scope: Scope
    issued: int
    expires: int | None
    link_id: str

    def __post_init__(self) -> None:
        if not 1 <= self.customer_id <= MAX_KASHFLOW_ID:
            raise ValueError("customer_id must be a KashFlow CustomerID (1 to 2147483647)")
        if self.issued < 0:
            raise ValueError("issued must be a unix time")
        if self.expires is not None and self.expires < self.issued:
            raise ValueError("a link cannot expire before it is issued")
        if len(self.link_id) != 2 * _LINK_ID_BYTES or not _is_lower_hex(self.link_id):
            raise ValueError(f"link_id must be {2 * _LINK_ID_BYTES} lowercase hex digits")

    @property
    def account(self) -> str:
        """The KashFlow account the link belongs to (its API username)."""
        return self.credentials.username


def new_link(
    credentials: Credentials,
    customer_id: int,
    customer_code: str,
    scope: Scope,
    *,
    now: int,
    expires_in: int | None = None,
    link_id: str | None = None,
) -> Link:
    """A link issued ``now``, expiring ``expires_in`` seconds later, with a fresh random id
    (or ``link_id``, chosen earlier by :func:`new_link_id`)."""
    if expires_in is not None and expires_in <= 0:
        raise ValueError("expires_in must be a positive number of seconds")
    return Link(
        credentials=credentials,
        customer_id=customer_id,
        customer_code=customer_code,
        scope=scope,
        issued=now,
        expires=None if expires_in is None else now + expires_in,
        link_id=link_id or new_link_id(),
    )


def new_link_id() -> str:
    """A random id for a link to be made (lower-case hex)."""
    return secrets.token_bytes(_LINK_ID_BYTES).hex()


def seal(link: Link, keyring: Keyring) -> str:
    """The URL-safe token for ``link`` under the keyring's current key.

    Raises ``ValueError`` if the contents would make a token longer than
    ``MAX_TOKEN_CHARS`` (such a token could never be opened).
    """
    payload = _encode(link)
    if len(payload) + OVERHEAD > _MAX_SEALED_BYTES:
        raise ValueError(
            f"link contents are too long for a {MAX_TOKEN_CHARS}-character token "
            f"(customer code, username and password together)"
        )
    blob = keyring.seal_secret(payload, purpose=PURPOSE)
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def open_link(token: str, keyring: Keyring, *, now: int) -> Link:
    """The link sealed in ``token``; raises :class:`InvalidLink` for any failure or expiry."""
    blob = _decode_token(token)
    reason: UnreadableReason | None = None
    try:
        payload = keyring.open_secret(blob, purpose=PURPOSE)
    except SecretUnreadable as exc:
        reason = exc.reason
    # Raised outside the except blocks so nothing about the failure is chained on.
    if reason is not None:
        raise InvalidLink(reason)
    link = _decode_or_none(payload)
    if link is None:
        raise InvalidLink("payload")
    if link.expires is not None and now >= link.expires:
        raise InvalidLink("expired")
    return link


def _decode_token(token: str) -> bytes:
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidLink("too_long")
    # Only the canonical encoding is accepted: the stdlib decoder tolerates stray
    # characters and non-zero spare bits, which would let two texts name one token.
    if len(token) % 4 == 1 or _TOKEN_CHARS.fullmatch(token) is None:
        raise InvalidLink("malformed")
    blob = _b64decode_or_none(token)
    if blob is None or base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii") != token:
        raise InvalidLink("malformed")
    return blob


def _b64decode_or_none(token: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None


# -- the plaintext record ---------------------------------------------------------------


def _encode(link: Link) -> bytes:
    scope = link.scope
    if scope.kind == "invoice":
        code = _ONE_INVOICE if len(scope.numbers) == 1 else _SEVERAL_INVOICES
    else:
        code = _ALL if scope.kind == "all" else _UNPAID
    out = bytearray((code,))
    out += bytes.fromhex(link.link_id)
    _put_varint(out, link.issued)
    _put_varint(out, 0 if link.expires is None else link.expires - link.issued + 1)
    _put_varint(out, link.customer_id)
    if code == _SEVERAL_INVOICES:
        _put_varint(out, len(scope.numbers))
    if code in (_ONE_INVOICE, _SEVERAL_INVOICES):
        for number in scope.numbers:
            _put_varint(out, number)
    for text in (link.customer_code, link.credentials.username, link.credentials.password):
        data = _utf8_or_none(text)
        if data is None:
            # The codec's own message would quote the offending character of a password.
            raise ValueError("customer code, username and password must be valid Unicode text")
        _put_varint(out, len(data))
        out += data
    return bytes(out)


class _Malformed(Exception):
    """The authenticated plaintext does not parse (only a bug or an old format can cause it)."""


def _decode_or_none(payload: bytes) -> Link | None:
    try:
        return _decode(payload)
    except (_Malformed, ValueError):
        return None


def _decode(payload: bytes) -> Link:
    reader = _Reader(payload)
    kind = reader.byte()
    if kind > _SEVERAL_INVOICES:
        raise _Malformed
    link_id = reader.take(_LINK_ID_BYTES).hex()
    issued = reader.varint()
    expiry = reader.varint()
    customer_id = reader.varint()
    if kind == _ALL:
        scope = Scope("all")
    elif kind == _UNPAID:
        scope = Scope("unpaid")
    else:
        count = 1 if kind == _ONE_INVOICE else reader.varint()
        if count < 2 and kind == _SEVERAL_INVOICES:
            raise _Malformed
        scope = Scope("invoice", tuple(reader.varint() for _ in range(min(count, 10_000))))
    code, username, password = reader.text(), reader.text(), reader.text()
    reader.end()
    return Link(
        credentials=Credentials(username=username, password=password),
        customer_id=customer_id,
        customer_code=code,
        scope=scope,
        issued=issued,
        expires=None if expiry == 0 else issued + expiry - 1,
        link_id=link_id,
    )


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise _Malformed
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        # Ten 7-bit groups cover 64 bits, far beyond any field here.
        for shift in range(0, 70, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise _Malformed

    def text(self) -> str:
        return self.take(self.varint()).decode("utf-8")

    def end(self) -> None:
        if self._pos != len(self._data):
            raise _Malformed


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return


def _utf8_or_none(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
