"""Which invoices a scope covers, read live from the sandbox."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from kashflow.client import Account
from kashflow.errors import NotFound
from kashflow.sandbox import Sandbox
from permalink.presentation import outstanding_by_currency
from permalink.scopes import Scope, invoice_in_scope, statement


async def test_all_scope_lists_every_invoice_newest_first(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = sandbox.customer("demo", "ACME01")
    result = await statement(demo_account, customer.id, Scope("all"))
    assert result.customer.code == "ACME01"
    assert result.company.name == sandbox.company("demo").name
    assert sorted(result.numbers) == sorted(r.number for r in sandbox.invoices("demo", "ACME01"))
    issued = [inv.issued for inv in result.invoices]
    assert issued == sorted(issued, reverse=True)


async def test_unpaid_scope_leaves_out_paid_invoices(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = sandbox.customer("demo", "ACME01")
    result = await statement(demo_account, customer.id, Scope("unpaid"))
    expected = {r.number for r in sandbox.invoices("demo", "ACME01") if not r.paid}
    assert set(result.numbers) == expected
    owed = sum(inv.outstanding for inv in result.invoices)
    assert sum(outstanding_by_currency(result.invoices).values()) == owed


async def test_new_invoices_appear_and_paid_ones_leave_unpaid(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = sandbox.customer("demo", "DUNE01")
    before = await statement(demo_account, customer.id, Scope("unpaid"))
    number = sandbox.add_invoice("demo", "DUNE01", issued=date.today())
    after = await statement(demo_account, customer.id, Scope("unpaid"))
    assert number in after.numbers and number not in before.numbers
    sandbox.mark_paid("demo", number)
    paid = await statement(demo_account, customer.id, Scope("unpaid"))
    assert number not in paid.numbers


async def test_one_invoice_scope_shows_only_that_invoice(
    sandbox: Sandbox, demo_account: Account
) -> None:
    record = sandbox.invoices("demo", "ACME01")[3]
    customer = sandbox.customer("demo", "ACME01")
    result = await statement(demo_account, customer.id, Scope("invoice", record.number))
    assert result.numbers == (record.number,)


async def test_another_customers_invoice_is_not_found(
    sandbox: Sandbox, demo_account: Account
) -> None:
    mine = sandbox.customer("demo", "ACME01")
    theirs = sandbox.invoices("demo", "BRIGHT01")[0]
    with pytest.raises(NotFound):
        await statement(demo_account, mine.id, Scope("invoice", theirs.number))
    with pytest.raises(NotFound):
        await invoice_in_scope(demo_account, mine.id, Scope("all"), theirs.number)


async def test_a_one_invoice_link_never_serves_another_invoice(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = sandbox.customer("demo", "ACME01")
    first, second = sandbox.invoices("demo", "ACME01")[:2]
    scope = Scope("invoice", first.number)
    assert (await invoice_in_scope(demo_account, customer.id, scope, first.number)).number == (
        first.number
    )
    with pytest.raises(NotFound):
        await invoice_in_scope(demo_account, customer.id, scope, second.number)


async def test_a_paid_invoice_is_outside_the_unpaid_scope(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = sandbox.customer("demo", "ACME01")
    paid = next(r for r in sandbox.invoices("demo", "ACME01") if r.paid)
    with pytest.raises(NotFound):
        await invoice_in_scope(demo_account, customer.id, Scope("unpaid"), paid.number)


async def test_an_invoice_with_nothing_owed_is_not_unpaid_though_kashflow_never_flags_it_paid(
    sandbox: Sandbox, demo_account: Account
) -> None:
    customer = sandbox.customer("demo", "GRAN01")
    records = sandbox.invoices("demo", "GRAN01")
    [no_charge] = [r for r in records if r.total == 0]
    # KashFlow sets Paid only once payments cover a non-zero total: here the flag says
    # "not paid" while nothing is outstanding, and the client owes nothing for it.
    assert (no_charge.paid, no_charge.outstanding) == (False, Decimal(0))
    [owed] = [r for r in records if r.outstanding > 0]

    unpaid = await statement(demo_account, customer.id, Scope("unpaid"))
    everything = await statement(demo_account, customer.id, Scope("all"))

    assert unpaid.numbers == (owed.number,)
    assert no_charge.number in everything.numbers
    with pytest.raises(NotFound):
        await invoice_in_scope(demo_account, customer.id, Scope("unpaid"), no_charge.number)
    found = await invoice_in_scope(demo_account, customer.id, Scope("all"), no_charge.number)
    assert found.number == no_charge.number
