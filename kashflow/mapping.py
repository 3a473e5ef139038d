"""From KashFlow's field names (as the SOAP reader yields them) to the project's models."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kashflow.models import CompanyDetails, Customer, Invoice, InvoiceLine, as_date

_CURRENCY_CODES = {"£": "GBP", "€": "EUR", "$": "USD"}


def _lines(*parts: Any) -> tuple[str, ...]:
    return tuple(str(p).strip() for p in parts if p and str(p).strip())


def company(row: dict[str, Any]) -> CompanyDetails:
    symbol = row.get("CurrencySymbol") or "£"
    return CompanyDetails(
        name=row.get("CompanyName") or "",
        email=row.get("PrimaryEmail") or "",
        address=_lines(*(row.get(f"Address{i}") for i in range(1, 5))),
        postcode=row.get("Postcode") or "",
        telephone=row.get("Telephone") or "",
        vat_number=row.get("VatRegistrationNumber") or "",
        currency_symbol=symbol,
        currency_code=_CURRENCY_CODES.get(symbol, row.get("CurrencyName") or "GBP"),
    )


def customer(row: dict[str, Any]) -> Customer:
    return Customer(
        id=row["CustomerID"],
        code=row.get("Code") or "",
        name=row.get("Name") or "",
        email=row.get("Email") or "",
        contact=row.get("Contact") or "",
        address=_lines(*(row.get(f"Address{i}") for i in range(1, 5))),
        postcode=row.get("Postcode") or "",
        payment_terms=row.get("PaymentTerms") or 0,
        currency_id=row.get("CurrencyID") or 0,
    )


def line(row: dict[str, Any]) -> InvoiceLine:
    return InvoiceLine(
        description=row.get("Description") or "",
        quantity=row.get("Quantity", Decimal(0)),
        rate=row.get("Rate", Decimal(0)),
        vat_rate=row.get("VatRate", Decimal(0)),
        vat_amount=row.get("VatAmount", Decimal(0)),
        sort=row.get("Sort") or 0,
    )


def invoice(row: dict[str, Any]) -> Invoice:
    lines = sorted((line(r) for r in row.get("Lines") or () if r), key=lambda ln: ln.sort)
    # The live service writes the customer's code in ``Customer`` and the name in
    # ``CustomerName``; older replies wrote the name in both. Read either way.
    name = (row.get("CustomerName") or "").strip()
    customer_field = (row.get("Customer") or "").strip()
    return Invoice(
        id=row.get("InvoiceDBID") or 0,
        number=row["InvoiceNumber"],
        customer_id=row.get("CustomerID") or 0,
        customer_name=name or customer_field,
        customer_code=customer_field if name and customer_field != name else "",
        issued=as_date(row["InvoiceDate"]),
        due=as_date(row["DueDate"]),
        net=row.get("NetAmount", Decimal(0)),
        vat=row.get("VATAmount", Decimal(0)),
        paid_amount=row.get("AmountPaid", Decimal(0)),
        paid=bool(row.get("Paid")),
        currency=row.get("CurrencyCode") or "GBP",
        exchange_rate=row.get("ExchangeRate") or Decimal(1),
        reference=row.get("CustomerReference") or "",
        lines=tuple(lines),
    )
