"""The sandbox's books: one independent set of records per KashFlow account, and their lookups.

Lookups answer the way KashFlow's operations do (by code, by numeric id, by email, all of a
customer's invoices, every unpaid invoice of the account); changes made by tests
(``add_invoice``, ``mark_paid``) replace records so cached renderings stay correct.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from kashflow.sandbox.records import (
    Company,
    CustomerRecord,
    InvoiceRecord,
    LineRecord,
    money,
)


@dataclass(frozen=True, slots=True)
class NewLine:
    """A line to add to a new invoice; VAT is computed from the rate (-1 = exempt)."""

    description: str
    quantity: Decimal
    rate: Decimal
    vat_rate: Decimal = Decimal("20")
    product_id: int = 0
    product_name: str = ""


def vat_for(quantity: Decimal, rate: Decimal, vat_rate: Decimal) -> Decimal:
    if vat_rate <= 0:
        return Decimal("0.00")
    return money(money(quantity * rate) * vat_rate / 100)


@dataclass(slots=True)
class Account:
    """One KashFlow account: its login, API settings, company and records.

    The API settings are KashFlow's (Apps → API Settings): the API switched on, the
    optional restriction to listed IP addresses, and the AutoAuth key with which a caller
    may add its own address to that list (``AutoAuthIP``).
    """

    username: str
    password: str = field(repr=False)
    company: Company
    api_enabled: bool = True
    ip_restricted: bool = False
    allowed_ips: set[str] = field(default_factory=set)
    auto_auth_key: str = field(default="", repr=False)
    customers: dict[int, CustomerRecord] = field(default_factory=dict)
    invoices: dict[int, InvoiceRecord] = field(default_factory=dict)
    next_number: int = 1
    next_dbid: int = 1
    next_line_id: int = 1

    def customer_by_code(self, code: str) -> CustomerRecord | None:
        wanted = code.strip().upper()
        for customer in self.customers.values():
            if customer.code.upper() == wanted:
                return customer
        return None

    def ip_allowed(self, ip: str) -> bool:
        return not self.ip_restricted or ip in self.allowed_ips

    def customer_by_email(self, email: str, *, exact: bool = False) -> CustomerRecord | None:
        # KashFlow's matching rules are not published. Loose (the default): any address in
        # the (possibly multi-address) field, ignoring case. Exact: the whole field as
        # stored. Either way the lowest CustomerID wins.
        wanted = email.strip() if exact else email.strip().lower()
        if not wanted:
            return None
        for customer_id in sorted(self.customers):
            customer = self.customers[customer_id]
            if exact:
                if customer.email == wanted:
                    return customer
            elif wanted == customer.email.lower() or wanted in (e.lower() for e in customer.emails):
                return customer
        return None

    def invoices_for(self, customer_id: int) -> list[InvoiceRecord]:
        return [i for i in self._by_number() if i.customer_id == customer_id]

    def unpaid(self) -> list[InvoiceRecord]:
        return [i for i in self._by_number() if not i.paid]

    def _by_number(self) -> Iterable[InvoiceRecord]:
        return (self.invoices[n] for n in sorted(self.invoices))

    def make_lines(self, lines: Sequence[NewLine]) -> tuple[LineRecord, ...]:
        made = []
        for sort, line in enumerate(lines, start=1):
            made.append(
                LineRecord(
                    line_id=self.next_line_id,
                    description=line.description,
                    quantity=line.quantity,
                    rate=line.rate,
                    vat_rate=line.vat_rate,
                    vat_amount=vat_for(line.quantity, line.rate, line.vat_rate),
                    sort=sort,
                    product_id=line.product_id,
                    product_name=line.product_name,
                )
            )
            self.next_line_id += 1
        return tuple(made)

    def add_invoice(
        self,
        customer: CustomerRecord,
        lines: Sequence[NewLine],
        *,
        issued: date,
        due: date | None = None,
        reference: str = "",
        currency: str | None = None,
        exchange_rate: Decimal = Decimal("1.0000"),
        amount_paid: Decimal = Decimal("0.00"),
        live_fields: bool = False,
        cis_reverse_charge: bool = False,
    ) -> InvoiceRecord:
        record = InvoiceRecord(
            dbid=self.next_dbid,
            number=self.next_number,
            customer_id=customer.id,
            customer_name=customer.name,
            issued=issued,
            due=due or issued + timedelta(days=customer.payment_terms),
            lines=self.make_lines(lines),
            amount_paid=money(amount_paid),
            reference=reference,
            currency=currency or self.company.currency_code,
            exchange_rate=exchange_rate,
            permalink_key=secrets.token_hex(16),
            live_fields=live_fields,
            cis_reverse_charge=cis_reverse_charge,
        )
        if cis_reverse_charge:
            # Under the CIS domestic reverse charge the customer accounts for the VAT.
            zeroed = tuple(replace(line, vat_amount=Decimal("0.00")) for line in record.lines)
            record = replace(record, lines=zeroed)
        self.invoices[record.number] = record
        self.next_number += 1
        self.next_dbid += 1 + record.number % 3
        return record

    def mark_paid(self, number: int, amount: Decimal | None = None) -> InvoiceRecord:
        """Record a payment (default: whatever is outstanding); returns the new version."""
        current = self.invoices[number]
        paid = current.total if amount is None else money(current.amount_paid + amount)
        updated = replace(current, amount_paid=paid, version=current.version + 1)
        self.invoices[number] = updated
        return updated


@dataclass(slots=True)
class Ledger:
    """Every account the sandbox knows, by username."""

    accounts: dict[str, Account] = field(default_factory=dict)

    def add(self, account: Account) -> None:
        self.accounts[account.username] = account

    def sign_in(self, username: str, password: str) -> Account | None:
        account = self.accounts.get(username)
        if account is None or not password_matches(account, password):
            return None
        return account

    def account(self, username: str) -> Account:
        try:
            return self.accounts[username]
        except KeyError:
            raise KeyError(f"the sandbox has no account {username!r}") from None


def password_matches(account: Account, password: str) -> bool:
    return secrets.compare_digest(account.password.encode(), password.encode())
