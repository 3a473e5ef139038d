"""The Gateway seam: what the core asks of KashFlow, whoever answers.

The SOAP client (:class:`kashflow.client.KashFlow`) is one implementation; the composition
root picks it, and nothing else names it. Another API (KashFlow's REST v2, once it is
stable) would be a second implementation of the same two Protocols. Every method raises
the errors of :mod:`kashflow.errors` and returns the frozen models of
:mod:`kashflow.models`.
"""

from __future__ import annotations

from typing import Protocol

from kashflow.models import CompanyDetails, Credentials, Customer, Invoice


class KashFlowAccount(Protocol):
    """One KashFlow account, its credentials bound once."""

    @property
    def username(self) -> str: ...

    async def company_details(self) -> CompanyDetails: ...
    async def customer_by_code(self, code: str) -> Customer: ...
    async def customer_by_id(self, customer_id: int) -> Customer: ...
    async def customer_by_email(self, email: str) -> Customer: ...
    async def customers(self) -> list[Customer]: ...
    async def invoices_for_customer(
        self, customer_id: int, *, lines: bool = True
    ) -> list[Invoice]: ...
    async def invoice(self, number: int) -> Invoice: ...
    async def invoice_pdf(self, number: int) -> bytes: ...


class Gateway(Protocol):
    """KashFlow: hands out accounts for credentials; owns the connections."""

    def account(self, credentials: Credentials) -> KashFlowAccount: ...

    async def close(self) -> None: ...


__all__ = ["Gateway", "KashFlowAccount"]
