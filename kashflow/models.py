"""Typed, immutable views of KashFlow records: what the gateway hands to the rest of the code."""

from __future__ import annotations

import contextlib
import email.utils
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

# What separates the addresses of one Email field: commas, semicolons, line breaks.
_EMAIL_SEPARATORS = re.compile(r"[,;\r\n]+")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A KashFlow API username and password. ``repr`` never shows the password."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CompanyDetails:
    name: str
    email: str = ""
    address: tuple[str, ...] = ()
    postcode: str = ""
    telephone: str = ""
    vat_number: str = ""
    currency_symbol: str = "£"
    currency_code: str = "GBP"


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    code: str
    name: str
    email: str = ""
    contact: str = ""
    address: tuple[str, ...] = ()
    postcode: str = ""
    payment_terms: int = 0
    currency_id: int = 0

    @property
    def emails(self) -> tuple[str, ...]:
        """Every address in KashFlow's Email field, which may hold several (separated by
        commas, semicolons or line breaks), as written there: whether each is a usable
        address is for the sender to check (:mod:`permalink.addresses`)."""
        parts = _EMAIL_SEPARATORS.split(self.email)
        return tuple(p.strip() for p in parts if p.strip())


def address_key(address: str) -> str:
    """What two spellings of one email address have in common, for comparing them.

    The addr-spec alone (a display name around it dropped), in Unicode NFC, lower-cased,
    with the domain in its ASCII (IDNA) form: ``José@Bücher.example``,
    ``josé@xn--bcher-kva.example`` and ``Jose Smith <JOSÉ@bücher.example>`` share one
    key. Case in the local part is ignored, as every mail system in practice does.
    """
    _display, spec = email.utils.parseaddr(address)
    spec = unicodedata.normalize("NFC", (spec or address).strip()).lower()
    local, at, domain = spec.rpartition("@")
    return f"{local}@{ascii_domain(domain)}" if at else spec


def ascii_domain(domain: str) -> str:
    """``domain`` lower-cased, in its ASCII (IDNA, ``xn--``) form when IDNA can write it."""
    domain = unicodedata.normalize("NFC", domain.strip()).lower()
    # A domain IDNA cannot write is compared as it is.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return domain


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    quantity: Decimal
    rate: Decimal
    vat_rate: Decimal
    vat_amount: Decimal
    sort: int = 0

    @property
    def net(self) -> Decimal:
        return self.quantity * self.rate

    @property
    def vat_exempt(self) -> bool:
        # KashFlow writes VatRate -1 for an exempt / "N/A" line.
        return self.vat_rate < 0


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int
    number: int
    customer_id: int
    customer_name: str
    issued: date
    due: date
    net: Decimal
    vat: Decimal
    paid_amount: Decimal
    paid: bool
    currency: str = "GBP"
    exchange_rate: Decimal = Decimal(1)
    reference: str = ""
    #: Empty when the invoice was read without its lines (list pages and replies).
    lines: tuple[InvoiceLine, ...] = ()
    #: The customer's code, when KashFlow's ``Customer`` element gives it (the live service
    #: does; older replies put the name there, and then this is empty).
    customer_code: str = ""

    @property
    def total(self) -> Decimal:
        # The SOAP Invoice has no gross field: gross = net + VAT.
        return self.net + self.vat

    @property
    def outstanding(self) -> Decimal:
        if self.paid:
            return Decimal(0)
        return self.total - self.paid_amount

    @property
    def is_credit_note(self) -> bool:
        return self.total < 0

    def overdue(self, today: date) -> bool:
        return not self.paid and self.outstanding > 0 and self.due < today

    def status(self, today: date) -> str:
        """One of ``paid``, ``part-paid``, ``overdue``, ``due`` (the badge on pages and mail)."""
        if self.paid or self.outstanding <= 0:
            return "paid"
        if self.overdue(today):
            return "overdue"
        if self.paid_amount > 0:
            return "part-paid"
        return "due"


def as_date(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value
