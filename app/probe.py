"""``kashflow-permalink probe``: what the live KashFlow does, shown in shape only.

Some of what the product assumes about KashFlow is in no public source: where the PDF a
PrintInvoice URL points at is served from and how (content type, redirects, cookies, how
long the URL works), whether ``InvoiceNumberList`` prints one merged PDF, how an empty list
or an unknown record is answered, how e-mail addresses are matched. The probe asks the
operator's own account: it calls each operation the product uses once for one customer
(plus a few lookups of records that do not exist) and prints what came back without client
data: no names, codes, addresses, invoice numbers, amounts, or URLs beyond scheme and host.
KashFlow's own sentences (StatusDetail) are printed with any of this customer's details
they might repeat blanked out. The operator reads the output and sends it to the project.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import aiohttp

from app.config import Settings
from kashflow import mapping
from kashflow.client import KashFlow
from kashflow.documents import page_count, page_texts
from kashflow.download import Download
from kashflow.errors import BadDocument, KashFlowError, Unavailable
from kashflow.models import Credentials, Customer
from kashflow.shape import ReplyShape, describe
from kashflow.soap import UnreadableReply, service

#: Lookups of records that cannot exist, to see how KashFlow says "not found".
NO_SUCH_CODE: Final = "NO-SUCH-CUSTOMER-PROBE"
NO_SUCH_ID: Final = 2_147_483_646
NO_SUCH_NUMBER: Final = 2_147_483_646
#: Invoices printed together to see whether InvoiceNumberList gives one merged PDF.
LIST_SIZE: Final = 3
SUGGESTED_BATCH: Final = 25


@dataclass
class Observed:
    shape: ReplyShape
    result: Any = None  # the parsed result when Status was OK


@dataclass
class Findings:
    """What the summary at the end is made of."""

    pdf_hosts: list[str] = field(default_factory=list)
    pdf_refused: list[str] = field(default_factory=list)
    pdf_ok: bool | None = None
    merged: bool | None = None


class Probe:
    def __init__(self, kf: KashFlow, credentials: Credentials, out: TextIO) -> None:
        self.kf = kf
        self.account = kf.account(credentials)
        self.credentials = credentials
        self.out = out
        self.findings = Findings()
        self._private: list[str] = [credentials.username, credentials.password]

    # --- output ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def item(self, label: str, lines: Iterable[str]) -> None:
        self.say(label)
        for line in lines:
            self.say(f"  {line}")

    def keep_private(self, *values: object) -> None:
        """Client data that must never be printed, should KashFlow's words repeat it."""
        self._private += [str(v) for v in values if v is not None and str(v).strip()]

    def blank(self, text: str) -> str:
        for value in sorted(set(self._private), key=len, reverse=True):
            text = re.sub(rf"(?<![\w@.]){re.escape(value)}(?![\w@])", "…", text, flags=re.I)
        return text

    # --- calls ----------------------------------------------------------------------------

    async def call(
        self, label: str, operation: str, *, customer_code: str = "", **params: Any
    ) -> Observed:
        try:
            status, body = await self.kf.exchange(self.credentials, operation, params)
        except Unavailable as exc:
            self.item(label, [f"no answer: {exc.detail}"])
            return Observed(ReplyShape(0, unreadable=exc.detail))
        shape = describe(operation, status, body, customer_code=customer_code)
        shape.detail, shape.fault = self.blank(shape.detail), self.blank(shape.fault)
        self.item(label, shape.summary())
        result = None
        if shape.ok:
            try:
                result = service().read(operation, body).result
            except UnreadableReply:
                result = None
        return Observed(shape, result)

    async def fetch(
        self, label: str, url: str, *, session: aiohttp.ClientSession | None = None
    ) -> Download | None:
        try:
            got = await self.kf.download(url, session=session)
        except BadDocument as exc:
            self.item(label, [f"not fetched: {exc.detail}"])
            self.findings.pdf_refused.append(exc.detail)
            return None
        except Unavailable as exc:
            self.item(label, [f"no answer: {exc.detail}"])
            return None
        lines = [
            f"HTTP {got.status}, Content-Type {got.content_type or '(none)'!r}",
            "redirects: "
            + (
                " -> ".join(f"{h.status} {h.scheme}://{h.host}" for h in got.hops)
                if got.redirected
                else "none"
            ),
            f"cookies set: {', '.join(sorted(set(got.cookies))) or 'none'}",
            f"starts with %PDF-: {_yes(got.body.startswith(b'%PDF-'))}, {len(got.body):,} bytes",
        ]
        if got.is_pdf:
            lines.append(f"pages: {await asyncio.to_thread(page_count, got.body)}")
        self.item(label, lines)
        return got

    # --- the run --------------------------------------------------------------------------

    async def run(self, code: str, wait: float | None) -> int:
        self.keep_private(code)
        self._header(wait)
        self.say("\n[account]")
        company = await self.call("GetCompanyDetails", "GetCompanyDetails")
        if company.result is None:
            self.say("\nstopped: KashFlow did not let this account in (see StatusDetail above).")
            return 1
        self.keep_private(*(company.result.get(k) for k in ("CompanyName", "PrimaryEmail")))

        self.say("\n[customers]")
        found = await self.call("GetCustomer", "GetCustomer", CustomerCode=code)
        if not found.result or not found.result.get("CustomerID"):
            self.say("\nstopped: KashFlow has no customer with the code given to --customer.")
            return 1
        customer = mapping.customer(found.result)
        self.keep_private(customer.id, customer.code, customer.name, customer.email)
        self.keep_private(*customer.emails)
        await self.call("GetCustomerByID", "GetCustomerByID", CustomerID=customer.id)
        await self._emails(customer)
        await self.call("GetCustomers", "GetCustomers")

        self.say("\n[invoices]")
        listed = await self.call(
            "GetInvoicesForCustomer",
            "GetInvoicesForCustomer",
            customer_code=customer.code,
            CustID=customer.id,
        )
        numbers = _newest_first(listed.result or [])
        self.keep_private(*numbers)
        await self.call("GetInvoices_Unpaid", "GetInvoices_Unpaid", customer_code=customer.code)
        if numbers:
            await self.call(
                "GetInvoice", "GetInvoice", customer_code=customer.code, InvoiceNumber=numbers[0]
            )
        await self._unknown_records()

        if not numbers:
            self.say("\nno PDF checks: this customer has no invoices (probe another customer).")
        else:
            await self._one_pdf(numbers[0], wait)
            await self._merged_pdf(numbers[:LIST_SIZE])
        self._summary()
        return 0

    def _header(self, wait: float | None) -> None:
        try:
            version = importlib.metadata.version("kashflow-permalink")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        endpoint = urlsplit(self.kf.endpoint)
        self.say(f"kashflow-permalink probe {version}")
        self.say(f"when: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC")
        self.say(f"endpoint: {endpoint.scheme}://{endpoint.hostname}{endpoint.path}")
        self.say(f"PDF hosts allowed: {self.kf.pdf_hosts}")
        self.say(f"wait before re-opening the PDF: {f'{wait:g} s' if wait else 'no (--wait)'}")

    async def _emails(self, customer: Customer) -> None:
        addresses = customer.emails
        if not addresses:
            self.say("GetCustomerByEmail\n  skipped: this customer has no e-mail address")
            return
        separators = sorted({c for c in customer.email if c in ",;"})
        self.say(
            f"customer's Email field: {len(addresses)} address(es)"
            + (f", separated by {' '.join(separators)!r}" if separators else "")
        )
        tries = [("first address as stored", addresses[0])]
        if addresses[0].upper() != addresses[0]:
            tries.append(("first address in upper case", addresses[0].upper()))
        if len(addresses) > 1:
            tries.append(("second address alone", addresses[1]))
        for how, address in tries:
            self.keep_private(address)
            seen = await self.call(
                f"GetCustomerByEmail, {how}", "GetCustomerByEmail", CustomerEmail=address
            )
            same = bool(seen.result) and seen.result.get("CustomerID") == customer.id
            self.say(f"  finds this customer: {_yes(same)}")

    async def _unknown_records(self) -> None:
        self.say("\n[records that do not exist]")
        await self.call(
            "GetCustomer, a code no customer has", "GetCustomer", CustomerCode=NO_SUCH_CODE
        )
        await self.call(
            "GetInvoicesForCustomer, a CustID no customer has",
            "GetInvoicesForCustomer",
            CustID=NO_SUCH_ID,
        )
        await self.call(
            "GetInvoice, a number no invoice has", "GetInvoice", InvoiceNumber=NO_SUCH_NUMBER
        )

    async def _print(self, label: str, **params: Any) -> str | None:
        printed = await self.call(label, "PrintInvoice", **params)
        url = printed.shape.text if printed.shape.ok else ""
        if not url:
            return None
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host and host not in self.findings.pdf_hosts:
            self.findings.pdf_hosts.append(host)
        allowed = self.kf.pdf_hosts.refusal(url)
        self.say(f"  URL: scheme {parts.scheme}, host {host or '(none)'}")
        self.say(f"  on the PDF host list: {'yes' if allowed is None else f'no ({allowed})'}")
        return url

    async def _one_pdf(self, number: int, wait: float | None) -> None:
        self.say("\n[one invoice's PDF]")
        url = await self._print("PrintInvoice", InvoiceNumber=number, InvoiceNumberList="")
        if url is None:
            return
        first = await self.fetch("PDF, opened at once without cookies", url)
        self.findings.pdf_ok = first is not None and first.is_pdf
        if first is not None and not first.is_pdf:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(
                cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=self.kf.timeout)
            ) as http:
                await self.fetch("PDF, opened with the cookies its answers set", url, session=http)
                await self.fetch("PDF, opened again with those cookies", url, session=http)
        again = await self.fetch("PDF, opened a second time", url)
        self.say(f"  opens a second time: {_yes(again is not None and again.is_pdf)}")
        if wait:
            self.say(f"(waiting {wait:g} s before opening it again)")
            await asyncio.sleep(wait)
            later = await self.fetch(f"PDF, opened after {wait:g} s", url)
            self.say(f"  still opens after {wait:g} s: {_yes(later is not None and later.is_pdf)}")

    async def _merged_pdf(self, numbers: list[int]) -> None:
        self.say("\n[several invoices in one PrintInvoice call: InvoiceNumberList]")
        if len(numbers) < 2:
            self.say("skipped: this customer has one invoice (probe a customer with more)")
            return
        listed = ",".join(str(n) for n in numbers)
        self.say(f"invoices listed: {len(numbers)}")
        url = await self._print(
            "PrintInvoice, list mode", InvoiceNumber=0, InvoiceNumberList=listed
        )
        if url is None:
            self.findings.merged = False
            return
        got = await self.fetch("PDF of the list", url)
        if got is None or not got.is_pdf:
            self.findings.merged = False
            return
        try:
            singles = [await self.account.invoice_pdf(n) for n in numbers]
        except KashFlowError as exc:
            self.say(f"  single PDFs to compare with: not fetched ({exc.message})")
            return
        verdict, merged = await asyncio.to_thread(compare_merged, got.body, singles)
        self.findings.merged = merged
        self.say(f"  one merged PDF of every invoice listed: {verdict}")

    def _summary(self) -> None:
        f = self.findings
        self.say("\n[summary]")
        if f.pdf_hosts:
            hosts = ", ".join(f.pdf_hosts)
            listed = all(self.kf.pdf_hosts.allows_host(h) for h in f.pdf_hosts)
            self.say(f"PDF host(s): {hosts} ({'on the list' if listed else 'NOT on the list'})")
            if not listed:
                self.say(f"  to allow: --pdf-hosts {self.kf.pdf_hosts},{hosts}")
        if f.pdf_ok is not None:
            self.say(f"invoice PDF usable as served: {_yes(f.pdf_ok)}")
        if f.merged is True:
            self.say(
                "InvoiceNumberList prints one merged PDF: merged documents may be fetched in "
                f"batches (KASHFLOW_PERMALINK_PDF_BATCH={SUGGESTED_BATCH})"
            )
        elif f.merged is False:
            self.say("InvoiceNumberList prints one merged PDF: no (leave PDF_BATCH at 0)")


def compare_merged(merged: bytes, singles: list[bytes]) -> tuple[str, bool]:
    """Whether ``merged`` holds every page of ``singles``, in order: a verdict in words,
    and whether batching may be switched on for it."""
    got = page_texts(merged)
    parts = [page_texts(pdf) for pdf in singles]
    wanted = [text for part in parts for text in part]
    if got == wanted:
        return f"yes ({len(got)} pages, every invoice's pages in the order listed)", True
    if sorted(got) == sorted(wanted):
        return f"yes, but in another order than listed ({len(got)} pages)", False
    if len(got) == len(wanted):
        return (
            f"probably ({len(got)} pages as expected, but their text differs from the single PDFs)",
            False,
        )
    if got == parts[0]:
        return "no: only the first invoice listed", False
    return f"no: {len(got)} pages where the invoices have {len(wanted)}", False


def _newest_first(rows: list[dict[str, Any]]) -> list[int]:
    dated = [(r.get("InvoiceDate"), r["InvoiceNumber"]) for r in rows if r.get("InvoiceNumber")]
    dated.sort(key=lambda pair: (pair[0] is not None, pair[0], pair[1]), reverse=True)
    return [number for _, number in dated]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


async def run_probe(
    settings: Settings,
    credentials: Credentials,
    customer_code: str,
    *,
    wait: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Probe the configured endpoint with ``credentials``; 0 once every step has run."""
    async with KashFlow(
        settings.kashflow_endpoint,
        timeout=settings.kashflow_timeout,
        pdf_hosts=settings.pdf_hosts,
    ) as kf:
        return await Probe(kf, credentials, out or sys.stdout).run(customer_code, wait)
