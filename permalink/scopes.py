"""Which invoices a scope covers, asked live of KashFlow: one rule for both doors.

A link (or a mail request) names a customer and a scope; the invoices are always read
fresh, so invoices raised after the link was made appear, and paid ones leave "unpaid".
An invoice outside the customer's scope is reported exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from kashflow.concurrent import calls_at_once
from kashflow.errors import NotFound
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.links import Scope


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

    def outstanding_by_currency(self) -> dict[str, Decimal]:
        """Total still owed, per currency (a customer may be billed in more than one)."""
        totals: dict[str, Decimal] = {}
        for inv in self.invoices:
            if inv.outstanding:
                totals[inv.currency] = totals.get(inv.currency, Decimal(0)) + inv.outstanding
        return totals


def select(invoices: list[Invoice], scope: Scope) -> tuple[Invoice, ...]:
    """The invoices of one customer that ``scope`` covers, newest first."""
    if scope.kind == "unpaid":
        chosen = [inv for inv in invoices if not inv.paid and inv.outstanding != 0]
    elif scope.kind == "invoice":
        chosen = [inv for inv in invoices if inv.number == scope.invoice]
    else:
        chosen = list(invoices)
    return tuple(sorted(chosen, key=lambda inv: (inv.issued, inv.number), reverse=True))


async def invoices_in_scope(
    source: InvoiceSource, customer_id: int, scope: Scope
) -> tuple[Invoice, ...]:
    if scope.kind == "invoice":
        assert scope.invoice is not None
        invoice = await source.invoice(scope.invoice)
        if invoice.customer_id != customer_id:
            raise NotFound("no invoice")  # same answer as a missing one: no probing
        return (invoice,)
    # Pages and replies list invoices without their lines (the PDFs carry those).
    return select(await source.invoices_for_customer(customer_id, lines=False), scope)


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
    if scope.kind == "invoice" and scope.invoice != number:
        raise NotFound("no invoice")
    invoice = await source.invoice(number)
    if invoice.customer_id != customer_id:
        raise NotFound("no invoice")
    if scope.kind == "unpaid" and (invoice.paid or invoice.outstanding == 0):
        raise NotFound("no invoice")
    return invoice
