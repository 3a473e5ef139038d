"""Which invoices a scope covers, asked live of KashFlow: one rule for both doors.

A link (or a mail request) names a customer and a scope; the invoices are always read
fresh, so invoices raised after the link was made appear, and paid ones leave "unpaid".
An invoice outside the customer's scope is reported exactly like a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from kashflow.concurrent import calls_at_once
from kashflow.errors import NotFound
from kashflow.models import CompanyDetails, Customer, Invoice

#: KashFlow numbers invoices and customers with 32-bit signed integers.
MAX_KASHFLOW_ID = 2**31 - 1
#: The most invoices one "these invoices" scope names (a request for more asks for "all").
MAX_SCOPE_INVOICES = 50

ScopeKind = Literal["all", "unpaid", "invoice"]
#: The scopes an account may choose as the bot's default (no invoice number to hand).
DefaultScope = Literal["all", "unpaid"]
SCOPE_KINDS: tuple[ScopeKind, ...] = get_args(ScopeKind)
DEFAULT_SCOPES: tuple[DefaultScope, ...] = get_args(DefaultScope)

_NUMBERS = re.compile(r"invoices?:([0-9]{1,10}(?:,[0-9]{1,10})*)")
_PARSE_ERROR = "scope must be 'all', 'unpaid' or 'invoice:<number>[,<number>...]'"


@dataclass(frozen=True, slots=True, init=False)
class Scope:
    """Which of a customer's invoices a link (or a reply) covers: all of them, the unpaid
    ones, or the invoices named by number (one, or a few).

    ``Scope("invoice", 1234)`` and ``Scope("invoice", [1241, 1242])`` both work; the
    numbers are kept sorted and without repeats, so equal scopes compare equal.
    """

    kind: ScopeKind
    numbers: tuple[int, ...]

    def __init__(self, kind: ScopeKind, numbers: int | Iterable[int] = ()) -> None:
        if kind not in SCOPE_KINDS:
            raise ValueError(f"scope kind must be all, unpaid or invoice, not {kind!r}")
        chosen = (numbers,) if isinstance(numbers, int) else tuple(numbers)
        if kind != "invoice":
            if chosen:
                raise ValueError(f"a scope of {kind} invoices takes no invoice number")
        else:
            if not chosen:
                raise ValueError("an invoice scope needs an invoice number")
            for number in chosen:
                if isinstance(number, bool) or not isinstance(number, int):
                    raise ValueError("invoice numbers are whole numbers")
                if not 1 <= number <= MAX_KASHFLOW_ID:
                    raise ValueError("an invoice number is from 1 to 2147483647")
            chosen = tuple(sorted(set(chosen)))
            if len(chosen) > MAX_SCOPE_INVOICES:
                raise ValueError(f"a scope names at most {MAX_SCOPE_INVOICES} invoices")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "numbers", chosen)

    @property
    def invoice(self) -> int | None:
        """The invoice number when the scope names exactly one."""
        return self.numbers[0] if len(self.numbers) == 1 else None

    def covers(self, invoice: Invoice) -> bool:
        """Whether ``invoice`` (one of the customer's) is in this scope."""
        if self.kind == "invoice":
            return invoice.number in self.numbers
        if self.kind == "unpaid":
            # A paid invoice owes nothing (``Invoice.outstanding``); a credit note is
            # "unpaid" while its credit is unused.
            return invoice.outstanding != 0
        return True

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Read ``all``, ``unpaid`` or ``invoice:<n>[,<n>...]`` (the form ``str`` writes)."""
        cleaned = text.strip().lower().replace(" ", "")
        if cleaned in ("all", "unpaid"):
            return cls("all" if cleaned == "all" else "unpaid")
        match = _NUMBERS.fullmatch(cleaned)
        if match is not None:
            try:
                return cls("invoice", [int(n) for n in match.group(1).split(",")])
            except ValueError:
                pass
        raise ValueError(f"{_PARSE_ERROR} (e.g. invoice:1234), not {text[:40]!r}")

    def __str__(self) -> str:
        if self.kind == "invoice":
            return "invoice:" + ",".join(str(n) for n in self.numbers)
        return self.kind


class InvoiceSource(Protocol):
    async def company_details(self) -> CompanyDetails: ...
    async def customer_by_id(self, customer_id: int) -> Customer: ...
    async def invoices_for_customer(
        self, customer_id: int, *, lines: bool = True
    ) -> list[Invoice]: ...
    async def invoice(self, number: int) -> Invoice: ...


@dataclass(frozen=True, slots=True)
class Statement:
    """What a page or a reply shows: who, for whom, and the invoices in scope."""

    company: CompanyDetails
    customer: Customer
    scope: Scope
    invoices: tuple[Invoice, ...]

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(inv.number for inv in self.invoices)


def select(invoices: Iterable[Invoice], scope: Scope) -> tuple[Invoice, ...]:
    """The invoices of one customer that ``scope`` covers, newest first."""
    chosen = [inv for inv in invoices if scope.covers(inv)]
    return tuple(sorted(chosen, key=lambda inv: (inv.issued, inv.number), reverse=True))


async def invoices_in_scope(
    source: InvoiceSource, customer_id: int, scope: Scope
) -> tuple[Invoice, ...]:
    if scope.invoice is not None:
        invoice = await source.invoice(scope.invoice)
        if invoice.customer_id != customer_id:
            raise NotFound("no invoice")  # same answer as a missing one: no probing
        return (invoice,)
    # Pages and replies list invoices without their lines (the PDFs carry those).
    found = select(await source.invoices_for_customer(customer_id, lines=False), scope)
    if scope.kind == "invoice" and not found:
        raise NotFound("no invoice")  # none of the named invoices is the customer's
    return found


async def statement(source: InvoiceSource, customer_id: int, scope: Scope) -> Statement:
    """Company, customer and the invoices in scope, fetched concurrently."""
    async with calls_at_once() as group:
        company = group.create_task(source.company_details())
        customer = group.create_task(source.customer_by_id(customer_id))
        invoices = group.create_task(invoices_in_scope(source, customer_id, scope))
    return Statement(company.result(), customer.result(), scope, invoices.result())


async def invoice_in_scope(
    source: InvoiceSource, customer_id: int, scope: Scope, number: int
) -> Invoice:
    """The one invoice ``number`` if the scope covers it, else NotFound."""
    if scope.kind == "invoice" and number not in scope.numbers:
        raise NotFound("no invoice")
    invoice = await source.invoice(number)
    if invoice.customer_id != customer_id or not scope.covers(invoice):
        raise NotFound("no invoice")
    return invoice
