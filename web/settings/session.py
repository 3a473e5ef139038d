"""The accountant's session: a sealed, expiring cookie; the server keeps only its record.

There is no user database. Signing in checks the KashFlow API credentials live; the
session then *is* those credentials, sealed under the server keyring (AES-256-GCM, its own
purpose, so a session cookie never opens as a link or a stored secret and vice versa),
together with its expiry, a per-session CSRF secret and the id of its record in the store
(:mod:`permalink.sessions`), which holds no credentials. Every page opens the cookie again
and asks whether the record is live; a cookie that does not open, has expired, or whose
record was ended (signed out) is simply no session.

Before signing in, a visitor gets an *anonymous* session (no credentials, a CSRF secret
only), so the sign-in form is protected against cross-site posting like every other form.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from kashflow.models import Credentials
from permalink.accounts import account_key
from permalink.keyring import Keyring, KeyringSource, SecretUnreadable, keyring_source

COOKIE: Final = "kfp_settings"
COOKIE_PATH: Final = "/settings"
#: Associated data binding an envelope to being a settings session.
PURPOSE: Final = b"kashflow-permalink/session/v1"
#: How long an anonymous (signed-out) session lasts: long enough to fill in the form.
ANONYMOUS_TTL_S: Final = 3600
#: Cookies longer than this are refused before any decoding.
MAX_COOKIE_CHARS: Final = 4096
_CSRF_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session. ``repr`` never shows the password (``Credentials`` hides it)."""

    csrf: str
    expires: int
    credentials: Credentials | None = None
    company_name: str = ""
    company_email: str = ""
    #: The session's record in the store (signed-in sessions only).
    session_id: str = ""

    @property
    def signed_in(self) -> bool:
        return self.credentials is not None

    @property
    def account(self) -> str:
        """The account every table files this session's data under."""
        if self.credentials is None:
            raise LookupError("an anonymous session has no account")
        return account_key(self.credentials.username)

    @property
    def username(self) -> str:
        return "" if self.credentials is None else self.credentials.username


def new_csrf() -> str:
    return secrets.token_urlsafe(_CSRF_BYTES)


def anonymous(now: float) -> Session:
    return Session(csrf=new_csrf(), expires=int(now) + ANONYMOUS_TTL_S)


def signed_in(
    credentials: Credentials,
    *,
    session_id: str,
    now: float,
    ttl_s: int,
    company_name: str,
    company_email: str,
) -> Session:
    """A fresh session for ``credentials``: a new CSRF secret, never the anonymous one's."""
    return Session(
        csrf=new_csrf(),
        expires=int(now) + ttl_s,
        credentials=credentials,
        company_name=company_name,
        company_email=company_email,
        session_id=session_id,
    )


class SessionCodec:
    """Seals sessions into cookie values and opens them again."""

    def __init__(self, keyring: Keyring | KeyringSource) -> None:
        self._keys = keyring_source(keyring)

    def seal(self, session: Session) -> str:
        record: dict[str, object] = {"c": session.csrf, "e": session.expires}
        if session.credentials is not None:
            record |= {
                "u": session.credentials.username,
                "p": session.credentials.password,
                "n": session.company_name,
                "m": session.company_email,
                "s": session.session_id,
            }
        plain = json.dumps(record, separators=(",", ":")).encode("utf-8")
        blob = self._keys().seal_secret(plain, purpose=PURPOSE)
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def open(self, value: str, *, now: float) -> Session | None:
        """The session in a cookie value, or None if it is tampered, unreadable or expired."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        blob = _b64decode_or_none(value)
        if blob is None:
            return None
        try:
            plain = self._keys().open_secret(blob, purpose=PURPOSE)
        except SecretUnreadable:
            return None
        session = _session_or_none(plain)
        if session is None or now >= session.expires:
            return None
        return session


def _b64decode_or_none(value: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def _session_or_none(plain: bytes) -> Session | None:
    # Authenticated plaintext only fails to parse after a format change: treat as signed out.
    try:
        record = json.loads(plain.decode("utf-8"))
        csrf, expires = str(record["c"]), int(record["e"])
        if "u" not in record:
            return Session(csrf=csrf, expires=expires)
        return Session(
            csrf=csrf,
            expires=expires,
            credentials=Credentials(str(record["u"]), str(record["p"])),
            company_name=str(record.get("n", "")),
            company_email=str(record.get("m", "")),
            session_id=str(record.get("s", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def set_cookie(response: web.StreamResponse, value: str, *, max_age: int, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def clear_cookie(response: web.StreamResponse, *, secure: bool) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="Strict")


__all__ = [
    "ANONYMOUS_TTL_S",
    "COOKIE",
    "COOKIE_PATH",
    "PURPOSE",
    "Session",
    "SessionCodec",
    "anonymous",
    "clear_cookie",
    "new_csrf",
    "set_cookie",
    "signed_in",
]
