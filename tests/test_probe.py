"""``kashflow-permalink probe`` against the sandbox: what it reports, and what it never prints.

Each variant switch of the sandbox stands for one way the live service may behave; the
probe must report it in words an operator can send on, and its output must hold none of
the client data it handled (names, codes, addresses, invoice numbers, URLs' paths).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app import config
from app.probe import compare_merged, run_probe
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, IPLOCKED, Sandbox

Probe = Callable[..., Any]


async def probe(
    sandbox: Sandbox,
    tmp_path: Path,
    *,
    customer: str = "ACME01",
    credentials: Credentials = DEMO,
    wait: float | None = None,
    pdf_hosts: str | None = None,
) -> tuple[int, str]:
    settings = config.load(
        {},
        state_dir=str(tmp_path),
        kashflow_endpoint=sandbox.url,
        pdf_hosts=pdf_hosts or sandbox.pdf_hosts,
    )
    out = io.StringIO()
    code = await run_probe(settings, credentials, customer, wait=wait, out=out)
    return code, out.getvalue()


def client_data(sandbox: Sandbox, code: str) -> list[str]:
    customer = sandbox.customer("demo", code)
    company = sandbox.company("demo")
    numbers = [str(r.number) for r in sandbox.invoices("demo", code)]
    return [
        customer.code,
        customer.name,
        *customer.emails,
        company.name,
        company.email,
        str(customer.id),
        DEMO.password,
        *numbers,
    ]


def section(report: str, title: str) -> str:
    return report.split(f"[{title}]", 1)[1].split("\n[", 1)[0]


async def test_the_report_answers_the_unknowns_on_a_faithful_sandbox(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    code, report = await probe(sandbox, tmp_path, wait=0.1)
    assert code == 0, report
    assert "Status OK, StatusDetail ''" in section(report, "account")
    invoices = section(report, "invoices")
    assert "invoice Customer element holds: the customer's code (220)" in invoices
    assert "decimal places in amounts: 4" in invoices
    assert "invoice lines: " in invoices and " 0 without" in invoices
    assert "Invoice fields beyond the published WSDL: CISRCNetAmount" in invoices
    unknown = section(report, "records that do not exist")
    assert "Status NO, StatusDetail 'There is no invoice with that number'" in unknown
    assert "empty element (<GetInvoicesForCustomerResult />)" in unknown
    pdf = section(report, "one invoice's PDF")
    assert "URL: scheme http, host 127.0.0.1" in pdf
    assert "Content-Type 'application/pdf'" in pdf and "cookies set: none" in pdf
    assert "opens a second time: yes" in pdf and "still opens after 0.1 s: yes" in pdf
    merged = section(report, "several invoices in one PrintInvoice call: InvoiceNumberList")
    assert "one merged PDF of every invoice listed: yes (3 pages" in merged
    assert "KASHFLOW_PERMALINK_PDF_BATCH=25" in section(report, "summary")


async def test_the_report_holds_no_client_data(sandbox: Sandbox, tmp_path: Path) -> None:
    _, report = await probe(sandbox, tmp_path, customer="IVY01")
    for value in client_data(sandbox, "IVY01"):
        assert not re.search(rf"(?<![\w,]){re.escape(value)}(?![\w,])", report, re.I), value
    assert "/print/" not in report and "/files/" not in report


async def test_kashflows_words_are_blanked_where_they_repeat_client_data(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    acme = sandbox.customer("demo", "ACME01")
    sandbox.faults.status_detail["GetInvoicesForCustomer"] = (
        f"Customer {acme.code} ({acme.email}) is archived"
    )
    _, report = await probe(sandbox, tmp_path)
    assert "StatusDetail 'Customer … (…) is archived'" in report
    assert acme.code not in report and acme.email not in report


@pytest.mark.parametrize(
    ("switch", "value", "title", "expected"),
    [
        ("pdf_content_type", "application/octet-stream", "one invoice's PDF",
         "Content-Type 'application/octet-stream'"),
        ("pdf_redirect", "same-host", "one invoice's PDF",
         "redirects: 302 http://127.0.0.1 -> 200"),
        ("pdf_redirect", "other-host", "one invoice's PDF",
         "not fetched: redirect 1 leads to another host (localhost)"),
        ("set_cookie", True, "one invoice's PDF", "cookies set: ASP.NET_SessionId"),
        ("untyped_lines", True, "invoices", " with xsi:type, 0 without"),
        ("empty_result", "absent", "records that do not exist", "absent (no result element)"),
        ("unknown_customer_id", "no", "records that do not exist",
         "Status NO, StatusDetail 'There is no customer with that ID'"),
        ("not_found_variant", "zeroed", "records that do not exist", "zeroed records (id 0): 1"),
        ("list_print", "first", "several invoices in one PrintInvoice call: InvoiceNumberList",
         "one merged PDF of every invoice listed: no: only the first invoice listed"),
        ("bad_pdf", "html", "one invoice's PDF", "starts with %PDF-: no"),
    ],
)  # fmt: skip
async def test_each_variant_of_the_live_service_shows_in_the_report(
    sandbox: Sandbox, tmp_path: Path, switch: str, value: object, title: str, expected: str
) -> None:
    setattr(sandbox.faults, switch, value)
    code, report = await probe(sandbox, tmp_path, customer="IVY01")
    assert code == 0, report
    if switch == "untyped_lines":
        assert re.search(r"invoice lines: 0 with xsi:type, [1-9]\d* without", report), report
    else:
        assert expected in section(report, title), section(report, title)


def item(text: str, label: str) -> list[str]:
    """The lines the report gives under ``label`` (an item of a section)."""
    lines = text.split(f"\n{label}\n", 1)[1].split("\n")
    return [line.strip() for line in itertools.takewhile(lambda row: row.startswith("  "), lines)]


async def test_a_pdf_that_needs_its_session_cookie_is_reported_unusable_as_served(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.pdf_needs_cookie = True
    code, report = await probe(sandbox, tmp_path, customer="IVY01")
    assert code == 0, report
    pdf = section(report, "one invoice's PDF")
    without = item(pdf, "PDF, opened at once without cookies")
    assert "cookies set: ASP.NET_SessionId" in without
    assert any(line.startswith("starts with %PDF-: no") for line in without), without
    with_cookies = item(pdf, "PDF, opened with the cookies its answers set")
    assert any(line.startswith("starts with %PDF-: yes") for line in with_cookies), with_cookies
    assert "invoice PDF usable as served: no" in section(report, "summary")


async def test_a_pdf_url_that_expires_shows_after_the_wait(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Long enough for two opens on a busy machine, short enough to lapse within the wait.
    sandbox.faults.pdf_expires_after = 2.0
    _, report = await probe(sandbox, tmp_path, wait=2.5)
    pdf = section(report, "one invoice's PDF")
    assert "opens a second time: yes" in pdf
    assert "still opens after 2.5 s: no" in pdf and "HTTP 404" in pdf


async def test_e_mail_matching_is_reported_by_what_finds_the_customer(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    shared = next(c for c in sandbox.customers("demo") if ";" in c.email)
    sandbox.faults.email_match = "exact"
    _, report = await probe(sandbox, tmp_path, customer=shared.code)
    customers = section(report, "customers")
    assert "customer's Email field: 2 address(es), separated by ';'" in customers
    found = re.findall(
        r"(GetCustomerByEmail, [^\n]+)\n(?:  [^\n]*\n)*?  finds this customer: (\w+)", customers
    )
    assert [answer for _, answer in found] == ["no", "no", "no"]


async def test_a_pdf_host_not_on_the_list_is_named_with_the_setting_to_change(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _, report = await probe(sandbox, tmp_path, pdf_hosts="securedwebapp.com")
    assert "on the PDF host list: no (host 127.0.0.1 is not on the PDF host list)" in report
    summary = section(report, "summary")
    assert "PDF host(s): 127.0.0.1 (NOT on the list)" in summary
    assert "to allow: --pdf-hosts securedwebapp.com,127.0.0.1" in summary


async def test_a_refused_account_stops_the_probe_with_kashflows_words(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    code, report = await probe(sandbox, tmp_path, credentials=IPLOCKED)
    assert code == 1
    assert "The IP address of 127.0.0.1 is not in the access list" in report
    assert "stopped: KashFlow did not let this account in" in report
    assert IPLOCKED.password not in report


async def test_an_unknown_customer_stops_the_probe(sandbox: Sandbox, tmp_path: Path) -> None:
    code, report = await probe(sandbox, tmp_path, customer="NOPE99")
    assert code == 1 and "no customer with the code given to --customer" in report
    assert "NOPE99" not in report


def test_the_merged_verdict_tells_order_and_missing_pages_apart() -> None:
    pdfs = [_pdf(text) for text in ("one", "two", "three")]
    joined = _pdf("one", "two", "three")
    assert compare_merged(joined, pdfs)[1] is True
    assert compare_merged(_pdf("three", "one", "two"), pdfs) == (
        "yes, but in another order than listed (3 pages)",
        False,
    )
    assert compare_merged(_pdf("one"), pdfs) == ("no: only the first invoice listed", False)
    assert compare_merged(_pdf("one", "two"), pdfs)[0] == "no: 2 pages where the invoices have 3"


def _pdf(*pages: str) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    for text in pages:
        doc.add_page()
        doc.set_font("helvetica", size=20)
        doc.cell(0, 10, text)
    return bytes(doc.output())


async def test_the_command_reads_credentials_from_the_environment(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    args = ["probe", "--customer", "IVY01", "--kashflow-endpoint", sandbox.url]
    args += ["--pdf-hosts", sandbox.pdf_hosts]
    env = {"KASHFLOW_USERNAME": DEMO.username, "KASHFLOW_PASSWORD": DEMO.password}
    code, out, err = await command(*args, env=env)
    assert code == 0, err
    assert out.startswith("kashflow-permalink probe ") and "[summary]" in out
    assert DEMO.password not in out + err
    missing, _, err = await command(*args, env={"KASHFLOW_USERNAME": "", "KASHFLOW_PASSWORD": ""})
    assert missing == 2 and "KASHFLOW_PASSWORD" in err and "Traceback" not in err


async def command(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
