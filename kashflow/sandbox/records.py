"""The sandbox's source of truth: companies, customers, invoices and lines as KashFlow keeps them.

Records are frozen; a change (a payment, say) replaces the record with a new ``version``,
so anything derived from one (its XML, its PDF) can be cached by identity or version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

PENNY = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """Round to pence the way KashFlow shows amounts (half up)."""
    return value.quantize(PENNY, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Company:
    name: str
    address: tuple[str, ...]
    postcode: str
    email: str
    contact: str
    telephone: str
    vat_number: str
    payment_terms: int = 30
    currency_code: str = "GBP"
    currency_symbol: str = "£"
    currency_name: str = "Pound Sterling"
    currency_id: int = 1


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: int
    code: str
    name: str
    contact_first: str
    contact_last: str
    email: str
    telephone: str
    address: tuple[str, ...]
    postcode: str
    created: datetime
    country_name: str = "United Kingdom"
    country_code: str = "GB"
    payment_terms: int = 30
    currency_id: int = 1
    vat_number: str = ""
    website: str = ""
    notes: str = ""
    contact_title: str = ""

    @property
    def contact(self) -> str:
        return f"{self.contact_first} {self.contact_last}".strip()

    @property
    def emails(self) -> tuple[str, ...]:
        """The addresses in the Email field, which KashFlow lets hold several."""
        parts = self.email.replace(",", ";").split(";")
        return tuple(p.strip() for p in parts if p.strip())


@dataclass(frozen=True, slots=True)
class LineRecord:
    line_id: int
    description: str
    quantity: Decimal
    rate: Decimal
    vat_rate: Decimal
    vat_amount: Decimal
    sort: int
    charge_type: int = 0
    product_id: int = 0
    product_name: str = ""

    @property
    def net(self) -> Decimal:
        return money(self.quantity * self.rate)

    @property
    def vat_exempt(self) -> bool:
        # KashFlow writes VatRate -1 for an exempt / "N/A" line.
        return self.vat_rate < 0


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    dbid: int
    number: int
    customer_id: int
    customer_name: str
    issued: date
    due: date
    lines: tuple[LineRecord, ...]
    amount_paid: Decimal = Decimal("0.00")
    reference: str = ""
    currency: str = "GBP"
    exchange_rate: Decimal = Decimal("1.0000")
    permalink_key: str = ""
    # Newer live fields (CISRC*, IsCISReverseCharge, line ProductName) are on some replies only.
    live_fields: bool = False
    cis_reverse_charge: bool = False
    version: int = 1

    @property
    def net(self) -> Decimal:
        return sum((line.net for line in self.lines), Decimal("0.00"))

    @property
    def vat(self) -> Decimal:
        return sum((line.vat_amount for line in self.lines), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return self.net + self.vat

    @property
    def paid(self) -> bool:
        """KashFlow's ``Paid``: set only once payments cover the whole (non-zero) total."""
        return self.total != 0 and self.amount_paid == self.total

    @property
    def outstanding(self) -> Decimal:
        return self.total - self.amount_paid

    @property
    def is_credit_note(self) -> bool:
        return self.total < 0

    @property
    def cis_net(self) -> Decimal:
        return self.net if self.cis_reverse_charge else Decimal("0.00")

    @property
    def cis_vat(self) -> Decimal:
        if not self.cis_reverse_charge:
            return Decimal("0.00")
        return money(self.net * Decimal("0.20"))
