"""Trying KashFlow again: Retry-After honoured, backoff jittered, total waiting bounded.

The rules are checked as written (``Backoff``, ``retry_after_seconds``) and through the
gateway against the sandbox answering 429 or 503 with ``Retry-After``; the sandbox's
record of when each request arrived shows KashFlow was not asked again too soon.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from kashflow.client import KashFlow
from kashflow.errors import Unavailable
from kashflow.retry import Backoff, retry_after_seconds
from kashflow.sandbox import DEMO, PDF_FETCH, Sandbox


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
    assert retry_after_seconds(
        format_datetime(now + timedelta(seconds=30), usegmt=True), now=now
    ) == pytest.approx(30)
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True), now=now) == 0
    for unreadable in (None, "", "soon", "-3", "1.5e9x"):
        assert retry_after_seconds(unreadable) is None


def test_backoff_never_retries_before_retry_after_and_jitters_above_it() -> None:
    backoff = Backoff(retries=3, delay=0.2, max_wait=10)
    pauses = [backoff.pause(1, 2.0, 0.0) for _ in range(200)]
    assert all(p is not None and 2.0 <= p <= 2.2 for p in pauses)
    assert len(set(pauses)) > 1  # spread, not in step


def test_backoff_doubles_with_jitter_without_retry_after() -> None:
    backoff = Backoff(retries=3, delay=0.2, max_wait=10)
    for attempt, low, high in ((1, 0.1, 0.3), (2, 0.2, 0.6), (3, 0.4, 1.2)):
        pause = backoff.pause(attempt, None, 0.0)
        assert pause is not None and low <= pause <= high
    assert backoff.pause(4, None, 0.0) is None


def test_backoff_gives_up_rather_than_wait_beyond_its_bound() -> None:
    backoff = Backoff(retries=5, delay=0.2, max_wait=10)
    assert backoff.pause(1, 30.0, 0.0) is None
    assert backoff.pause(2, 3.0, 8.0) is None


@pytest.mark.parametrize("status", [429, 503])
async def test_a_throttled_call_waits_as_asked_then_succeeds(sandbox: Sandbox, status: int) -> None:
    sandbox.faults.throttle = 1
    sandbox.faults.throttle_status = status
    sandbox.faults.retry_after = "1"
    async with KashFlow(sandbox.url, retries=2, retry_delay=0.01) as kf:
        company = await kf.account(DEMO).company_details()
    assert company.name == sandbox.company("demo").name
    first, second = (c.at for c in sandbox.calls)
    assert second - first >= 1.0


async def test_retry_after_beyond_the_bound_fails_at_once(sandbox: Sandbox) -> None:
    sandbox.faults.throttle = 5
    sandbox.faults.retry_after = "120"
    async with KashFlow(sandbox.url, retries=3, max_retry_wait=5) as kf:
        with pytest.raises(Unavailable) as caught:
            await kf.account(DEMO).company_details()
    assert caught.value.retry_after == 120
    assert len(sandbox.calls) == 1  # not asked again: it said two minutes


async def test_a_throttled_call_without_retry_after_backs_off_and_gives_up(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.throttle = 10
    sandbox.faults.retry_after = None
    async with KashFlow(sandbox.url, retries=2, retry_delay=0.01) as kf:
        with pytest.raises(Unavailable):
            await kf.account(DEMO).company_details()
    assert len(sandbox.calls) == 3


async def test_a_throttled_pdf_download_is_retried_after_retry_after(sandbox: Sandbox) -> None:
    sandbox.faults.throttle = 1
    sandbox.faults.retry_after = "1"
    sandbox.faults.operations = frozenset({PDF_FETCH})
    async with KashFlow(sandbox.url, retry_delay=0.01, pdf_hosts=sandbox.pdf_hosts) as kf:
        pdf = await kf.account(DEMO).invoice_pdf(sandbox.invoices("demo")[0].number)
    assert pdf.startswith(b"%PDF-")
    first, second = (c.at for c in sandbox.calls if c.operation == PDF_FETCH)
    assert second - first >= 1.0
