"""What a business tells its clients beyond KashFlow: how to pay, its logo, its languages.

Per account (its KashFlow username, as in :mod:`permalink.accounts`): the payment
instructions shown beside the total on the page, in the bot's reply and on the statement
pack's cover (bank, account name, UK sort code and account number and/or IBAN and BIC, the
reference to quote, an optional pay-online address); the account's default language;
whether merged PDFs open with the statement cover; and a small logo, stored here (checked
and re-encoded as PNG, so what we serve is an image we wrote) and served from our own
origin. Per account and customer code: the language the accountant chose for that client.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from permalink.accounts import SettingError, account_key, clean_fields
from permalink.db import Conn, Database, Row, transaction
from permalink.i18n import DEFAULT_LANGUAGE, LANGUAGES, pick_language, supported

ReferenceKind = Literal["invoice", "customer", "customer-invoice"]
REFERENCE_KINDS: Final[tuple[ReferenceKind, ...]] = get_args(ReferenceKind)

#: The largest upload the logo field takes, and the box a logo is shrunk to fit.
MAX_LOGO_UPLOAD: Final = 512 * 1024
LOGO_BOX: Final = (600, 200)
_MAX_LOGO_PIXELS: Final = 25_000_000
_LOGO_FORMATS: Final = ("PNG", "JPEG", "GIF", "WEBP")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BIC = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


@dataclass(frozen=True, slots=True)
class PaymentInstructions:
    """How a client pays. Empty fields are simply not shown."""

    bank_name: str = ""
    account_name: str = ""
    sort_code: str = ""
    account_number: str = ""
    iban: str = ""
    bic: str = ""
    reference: ReferenceKind = "invoice"
    pay_url: str = ""

    @property
    def bank_transfer(self) -> bool:
        return bool((self.sort_code and self.account_number) or self.iban)

    @property
    def given(self) -> bool:
        """Whether there is anything to tell a client."""
        return self.bank_transfer or bool(self.pay_url)

    @property
    def iban_grouped(self) -> str:
        """The IBAN in groups of four, as it is printed to be read."""
        return " ".join(self.iban[i : i + 4] for i in range(0, len(self.iban), 4))

    def reference_for(self, customer_code: str, numbers: Sequence[int]) -> PaymentReference:
        """The reference a client should quote for these invoices."""
        if self.reference == "customer":
            return PaymentReference(customer_code, per_invoice=False)
        first = numbers[0] if numbers else None
        if self.reference == "customer-invoice":
            example = f"{customer_code}-{first}" if first is not None else f"{customer_code}-…"
        else:
            example = str(first) if first is not None else ""
        return PaymentReference(example, per_invoice=len(numbers) != 1)


@dataclass(frozen=True, slots=True)
class PaymentReference:
    """``text`` is the reference itself, or — when it changes per invoice — an example."""

    text: str
    per_invoice: bool


@dataclass(frozen=True, slots=True)
class BusinessProfile:
    account: str
    payment: PaymentInstructions = field(default_factory=PaymentInstructions)
    default_language: str = DEFAULT_LANGUAGE
    #: Merged PDFs open with the statement page we render.
    statement_cover: bool = True
    #: When the logo was last changed (0: no logo); part of its URL, so a new one shows.
    logo_version: int = 0

    @property
    def has_logo(self) -> bool:
        return self.logo_version > 0


# -- validation -----------------------------------------------------------------------------


def _line(what: str, limit: int) -> Callable[[object], object]:
    def clean(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"The {what} must be text.")
        text = " ".join(value.split())
        if _CONTROL.search(text) or len(text) > limit:
            raise ValueError(f"The {what} must be one line of at most {limit} characters.")
        return text

    return clean


def _sort_code(value: object) -> str:
    digits = re.sub(r"[\s-]", "", value) if isinstance(value, str) else "x"
    if not digits:
        return ""
    if not re.fullmatch(r"[0-9]{6}", digits):
        raise ValueError("A sort code has six digits, such as 20-00-00.")
    return f"{digits[0:2]}-{digits[2:4]}-{digits[4:6]}"


def _account_number(value: object) -> str:
    digits = re.sub(r"\s", "", value) if isinstance(value, str) else "x"
    if not digits:
        return ""
    if not re.fullmatch(r"[0-9]{7,8}", digits):
        raise ValueError("A UK account number has eight digits (seven on some older accounts).")
    return digits.zfill(8)


def iban_valid(iban: str) -> bool:
    """ISO 13616: the shape, then the check digits (mod 97 of the rearranged number)."""
    if not _IBAN.fullmatch(iban):
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in moved)
    return int(number) % 97 == 1


def _iban(value: object) -> str:
    compact = re.sub(r"\s", "", value).upper() if isinstance(value, str) else "x"
    if not compact:
        return ""
    if not iban_valid(compact):
        raise ValueError(
            "That IBAN is not valid: check it against your bank's (its check digits do not match)."
        )
    return compact


def _bic(value: object) -> str:
    compact = re.sub(r"\s", "", value).upper() if isinstance(value, str) else "x"
    if not compact:
        return ""
    if not _BIC.fullmatch(compact):
        raise ValueError("A BIC (SWIFT code) has 8 or 11 letters and digits, such as BUKBGB22.")
    return compact


def _pay_url(value: object) -> str:
    text = value.strip() if isinstance(value, str) else "\x00"
    if not text:
        return ""
    parts = urlsplit(text)
    if (
        parts.scheme != "https"
        or not parts.netloc
        or _CONTROL.search(text)
        or " " in text
        or len(text) > 500
    ):
        raise ValueError(
            "The pay-online address must be a full https:// address (at most 500 characters)."
        )
    return text


def _reference(value: object) -> str:
    if value not in REFERENCE_KINDS:
        raise ValueError("Choose which reference clients should quote.")
    return str(value)


def _language(value: object) -> str:
    chosen = supported(value) if isinstance(value, str) else None
    if chosen is None:
        raise ValueError("Choose one of the languages offered.")
    return chosen


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("The statement page setting takes true or false.")
    return value


_CLEANERS: Final[dict[str, Callable[[object], object]]] = {
    "bank_name": _line("bank name", 100),
    "account_name": _line("account name", 100),
    "sort_code": _sort_code,
    "account_number": _account_number,
    "iban": _iban,
    "bic": _bic,
    "reference": _reference,
    "pay_url": _pay_url,
    "default_language": _language,
    "statement_cover": _flag,
}
#: The names :meth:`BusinessProfiles.update` accepts (also the table's plain columns).
FIELDS: Final = tuple(_CLEANERS)


def _check_together(values: dict[str, object]) -> None:
    if bool(values["sort_code"]) != bool(values["account_number"]):
        missing = "account_number" if values["sort_code"] else "sort_code"
        raise SettingError(missing, "Give both the sort code and the account number, or neither.")
    if values["bic"] and not values["iban"]:
        raise SettingError(
            "iban", "A BIC goes with an IBAN: add the IBAN too, or leave the BIC empty."
        )


def clean_logo(data: bytes) -> bytes:
    """The uploaded image as a small PNG we wrote ourselves, or ValueError saying why not.

    Re-encoding drops whatever else the file carried (metadata, a script in a polyglot);
    the image is shrunk to fit :data:`LOGO_BOX`.
    """
    if not data:
        raise ValueError("Choose an image file for the logo.")
    if len(data) > MAX_LOGO_UPLOAD:
        raise ValueError(f"The logo file must be at most {MAX_LOGO_UPLOAD // 1024} KB.")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            width, height = probe.size
            if kind not in _LOGO_FORMATS or width * height > _MAX_LOGO_PIXELS:
                raise ValueError("unsupported")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            picture = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ValueError("The logo must be a PNG, JPEG, GIF or WebP image.") from None
    picture.thumbnail(LOGO_BOX)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


# -- the tables -----------------------------------------------------------------------------

_COLUMNS: Final = ", ".join(FIELDS)


def _profile(account: str, row: Row | None) -> BusinessProfile:
    if row is None:
        return BusinessProfile(account=account)
    return BusinessProfile(
        account=account,
        payment=PaymentInstructions(
            bank_name=row["bank_name"],
            account_name=row["account_name"],
            sort_code=row["sort_code"],
            account_number=row["account_number"],
            iban=row["iban"],
            bic=row["bic"],
            reference=row["reference"],
            pay_url=row["pay_url"],
        ),
        default_language=supported(row["default_language"]) or DEFAULT_LANGUAGE,
        statement_cover=bool(row["statement_cover"]),
        logo_version=int(row["logo_updated"] or 0) if row["has_logo"] else 0,
    )


def _values(profile: BusinessProfile) -> dict[str, object]:
    p = profile.payment
    return {
        "bank_name": p.bank_name,
        "account_name": p.account_name,
        "sort_code": p.sort_code,
        "account_number": p.account_number,
        "iban": p.iban,
        "bic": p.bic,
        "reference": p.reference,
        "pay_url": p.pay_url,
        "default_language": profile.default_language,
        "statement_cover": profile.statement_cover,
    }


def _select(conn: Conn, key: str) -> Row | None:
    return conn.one(
        f"SELECT {_COLUMNS}, logo_updated, "  # noqa: S608 - fixed column names
        "CASE WHEN logo IS NULL THEN 0 ELSE 1 END AS has_logo "
        "FROM business_profiles WHERE account = ?",
        (key,),
    )


def _write(conn: Conn, key: str, values: dict[str, object], now: int) -> None:
    params = {**values, "statement_cover": int(bool(values["statement_cover"]))}
    marks = ", ".join(f":{name}" for name in FIELDS)
    assignments = ", ".join(f"{name} = excluded.{name}" for name in FIELDS)
    conn.execute(
        f"INSERT INTO business_profiles (account, {_COLUMNS}, updated) "  # noqa: S608
        f"VALUES (:account, {marks}, :updated) "
        f"ON CONFLICT (account) DO UPDATE SET {assignments}, updated = excluded.updated",
        {**params, "account": key, "updated": now},
    )


def _customer_key(code: str) -> str:
    cleaned = code.strip().upper() if isinstance(code, str) else ""
    if not cleaned or len(cleaned) > 100:
        raise ValueError("a customer code is required")
    return cleaned


class BusinessProfiles:
    """Payment instructions, languages, the cover setting and the logo, per account."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def get(self, account: str) -> BusinessProfile:
        """The account's profile (the defaults if it never saved one)."""
        key = account_key(account)
        return _profile(key, await self._db.run(lambda conn: _select(conn, key)))

    async def update(self, account: str, **changes: object) -> BusinessProfile:
        """Validate and save some fields (names from :data:`FIELDS`); returns the result.

        Raises :class:`~permalink.accounts.SettingError` (a ``ValueError`` naming the
        field) with a sentence for the accountant when a value is wrong.
        """
        key = account_key(account)
        clean = clean_fields(changes, _CLEANERS, "business settings")
        now = int(self._clock())

        def write(conn: Conn) -> BusinessProfile:
            with transaction(conn):
                merged = {**_values(_profile(key, _select(conn, key))), **clean}
                _check_together(merged)
                _write(conn, key, merged, now)
                return _profile(key, _select(conn, key))

        return await self._db.run(write)

    async def set_logo(self, account: str, png: bytes | None) -> BusinessProfile:
        """Store a logo already through :func:`clean_logo`, or remove it (``None``)."""
        key = account_key(account)
        now = int(self._clock())

        def write(conn: Conn) -> BusinessProfile:
            with transaction(conn):
                current = _profile(key, _select(conn, key))
                _write(conn, key, _values(current), now)
                # A version that always moves on, even twice in one second.
                version = max(now, current.logo_version + 1) if png is not None else None
                conn.execute(
                    "UPDATE business_profiles SET logo = ?, logo_updated = ? WHERE account = ?",
                    (png, version, key),
                )
                return _profile(key, _select(conn, key))

        return await self._db.run(write)

    async def logo(self, account: str) -> bytes | None:
        key = account_key(account)

        def select(conn: Conn) -> bytes | None:
            value = conn.value("SELECT logo FROM business_profiles WHERE account = ?", (key,))
            return None if value is None else bytes(value)

        return await self._db.run(select)

    async def customer_language(self, account: str, customer_code: str) -> str | None:
        """The language the accountant chose for this client, if any."""
        key, code = account_key(account), _customer_key(customer_code)

        def select(conn: Conn) -> str | None:
            value = conn.value(
                "SELECT language FROM customer_languages WHERE account = ? AND customer_code = ?",
                (key, code),
            )
            return supported(value) if isinstance(value, str) else None

        return await self._db.run(select)

    async def set_customer_language(
        self, account: str, customer_code: str, language: str | None
    ) -> None:
        """Choose this client's language; ``None`` (or ``""``) goes back to the default."""
        key, code = account_key(account), _customer_key(customer_code)
        chosen = _language(language) if language else None
        now = int(self._clock())

        def write(conn: Conn) -> None:
            with transaction(conn):
                conn.execute(
                    "DELETE FROM customer_languages WHERE account = ? AND customer_code = ?",
                    (key, code),
                )
                if chosen is not None:
                    conn.execute(
                        "INSERT INTO customer_languages (account, customer_code, language, "
                        "updated) VALUES (?, ?, ?, ?)",
                        (key, code, chosen, now),
                    )

        await self._db.run(write)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What the business set that shapes one client's page, reply and pack."""

    business: BusinessProfile
    #: The language the accountant chose for this client, if any.
    customer_language: str | None = None

    def language(self, *, asked: str | None = None, browser: str | None = None) -> str:
        """The client's language: ``asked`` (the language a request was written in), then
        the accountant's choice for this client, then ``browser`` (a page's
        Accept-Language, already negotiated), then the account's default."""
        return pick_language(asked, self.customer_language, browser, self.business.default_language)


__all__ = [
    "FIELDS",
    "LANGUAGES",
    "LOGO_BOX",
    "MAX_LOGO_UPLOAD",
    "REFERENCE_KINDS",
    "BusinessProfile",
    "BusinessProfiles",
    "ClientSettings",
    "PaymentInstructions",
    "PaymentReference",
    "ReferenceKind",
    "clean_logo",
    "iban_valid",
]
