"""Where invoice PDFs may come from: the allow-list, redirects, the size cap, no cookies.

The rules are checked as written (``PdfHosts``) and through the gateway against the
sandbox over real sockets: a URL or redirect the rules refuse is never requested, and
the sandbox records every request, so "never requested" is something the test can see.
"""

from __future__ import annotations

import aiohttp
import pytest

from app import config
from app.config import ConfigError
from kashflow.client import KashFlow
from kashflow.errors import BadDocument
from kashflow.pdfhosts import DEFAULT_PDF_HOSTS, PdfHosts
from kashflow.sandbox import DEMO, PDF_FETCH, SECOND, Sandbox


@pytest.mark.parametrize(
    "url",
    [
        "https://securedwebapp.com/print/abc.pdf",
        "https://app.kashflow.com/x/invoice.pdf",
        "https://kashflow.com/doc?id=1",
        "https://SECUREDWEBAPP.COM./print/abc.pdf",
    ],
)
def test_kashflows_own_hosts_are_allowed_by_default(url: str) -> None:
    assert PdfHosts.parse(DEFAULT_PDF_HOSTS).refusal(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://securedwebapp.com/print/abc.pdf", "https is required"),
        ("https://evil.example/print/abc.pdf", "not on the PDF host list"),
        ("https://kashflow.com.evil.example/a.pdf", "not on the PDF host list"),
        ("https://notkashflow.com/a.pdf", "not on the PDF host list"),
        ("https://user:pw@securedwebapp.com/a.pdf", "credentials"),
        ("ftp://securedwebapp.com/a.pdf", "not an http(s) URL"),
        ("/print/abc.pdf", "not an http(s) URL"),
        ("https://securedwebapp.com:99999/a.pdf", "not a URL"),
    ],
)
def test_anything_else_is_refused_with_a_reason(url: str, reason: str) -> None:
    refusal = PdfHosts.parse(DEFAULT_PDF_HOSTS).refusal(url)
    assert refusal is not None and reason in refusal
    assert "abc" not in refusal  # the path (a document's key) never reaches the reason


def test_plain_http_only_for_loopback_hosts_named_on_the_list() -> None:
    hosts = PdfHosts.parse("127.0.0.1, localhost, ::1, files.example")
    assert hosts.refusal("http://127.0.0.1:8080/print/a.pdf") is None
    assert hosts.refusal("http://localhost/print/a.pdf") is None
    assert hosts.refusal("http://[::1]:81/print/a.pdf") is None
    assert hosts.refusal("https://files.example/a.pdf") is None
    assert "https is required" in (hosts.refusal("http://files.example/a.pdf") or "")
    # Loopback is not allowed by being loopback: it must be named.
    assert "not on the PDF host list" in (
        PdfHosts.parse("files.example").refusal("http://127.0.0.1/a.pdf") or ""
    )


def test_a_wildcard_covers_the_hosts_below_it_not_the_domain() -> None:
    hosts = PdfHosts.parse("*.kashflow.com")
    assert hosts.allows_host("app.kashflow.com") and hosts.allows_host("a.b.kashflow.com")
    assert not hosts.allows_host("kashflow.com")
    assert not hosts.allows_host("evilkashflow.com")


@pytest.mark.parametrize(
    "value", ["", " , ", "https://securedwebapp.com", "kashflow.com:443", "*", "a b.com"]
)
def test_a_malformed_host_list_is_a_clear_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({"KASHFLOW_PERMALINK_PDF_HOSTS": value or ","})
    assert "PDF_HOSTS" in str(caught.value)


def test_the_setting_comes_from_the_environment_or_the_command_line() -> None:
    from_env = config.load({"KASHFLOW_PERMALINK_PDF_HOSTS": "files.kashflow.example"})
    assert from_env.pdf_hosts == "files.kashflow.example"
    overridden = config.load(
        {"KASHFLOW_PERMALINK_PDF_HOSTS": "files.kashflow.example"}, pdf_hosts="127.0.0.1"
    )
    assert overridden.pdf_hosts == "127.0.0.1"
    assert config.load({}).pdf_hosts == DEFAULT_PDF_HOSTS


def pdf_fetches(sandbox: Sandbox) -> int:
    return len([c for c in sandbox.calls if c.operation == PDF_FETCH])


async def test_a_print_url_on_a_host_not_listed_is_never_requested(sandbox: Sandbox) -> None:
    async with KashFlow(sandbox.url, retries=0, pdf_hosts="securedwebapp.com") as kf:
        with pytest.raises(BadDocument) as caught:
            await kf.account(DEMO).invoice_pdf(sandbox.invoices("demo")[0].number)
    assert "not on the PDF host list" in caught.value.detail
    assert pdf_fetches(sandbox) == 0


async def test_by_default_the_sandboxs_plain_http_url_is_refused(sandbox: Sandbox) -> None:
    async with KashFlow(sandbox.url, retries=0) as kf:
        with pytest.raises(BadDocument):
            await kf.account(DEMO).invoice_pdf(sandbox.invoices("demo")[0].number)
    assert pdf_fetches(sandbox) == 0


async def test_a_pdf_over_the_size_cap_is_refused(sandbox: Sandbox) -> None:
    number = sandbox.invoices("demo")[0].number
    async with KashFlow(
        sandbox.url, retries=0, pdf_hosts=sandbox.pdf_hosts, max_pdf_bytes=1000
    ) as kf:
        with pytest.raises(BadDocument) as caught:
            await kf.account(DEMO).invoice_pdf(number)
    assert "larger than 1,000 bytes" in caught.value.detail


async def test_a_redirect_to_another_host_is_refused_before_it_is_followed(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.pdf_redirect = "other-host"
    # Even a list that names both hosts: a redirect may not change host.
    async with KashFlow(sandbox.url, retries=0, pdf_hosts="127.0.0.1,localhost") as kf:
        with pytest.raises(BadDocument) as caught:
            await kf.account(DEMO).invoice_pdf(sandbox.invoices("demo")[0].number)
    assert "another host (localhost)" in caught.value.detail
    assert pdf_fetches(sandbox) == 1  # the first hop only


async def test_a_redirect_on_the_same_host_is_followed(
    sandbox: Sandbox, kashflow: KashFlow
) -> None:
    sandbox.faults.pdf_redirect = "same-host"
    pdf = await kashflow.account(DEMO).invoice_pdf(sandbox.invoices("demo")[0].number)
    assert pdf.startswith(b"%PDF-")
    assert pdf_fetches(sandbox) == 2


async def calls_with_cookies(sandbox: Sandbox, kf: KashFlow) -> int:
    """Two accounts' calls and PDF fetches; how many requests carried a cookie."""
    before = len(sandbox.calls)
    demo, second = kf.account(DEMO), kf.account(SECOND)
    await demo.company_details()
    await second.company_details()
    await demo.invoice_pdf(sandbox.invoices("demo")[0].number)
    await second.invoice_pdf(sandbox.invoices("second")[0].number)
    await demo.customers()
    made = sandbox.calls[before:]
    assert len(made) == 9
    return len([c for c in made if c.cookie])


async def test_no_cookie_travels_between_calls_accounts_or_pdf_fetches(sandbox: Sandbox) -> None:
    sandbox.faults.set_cookie = True
    sandbox.faults.pdf_redirect = "same-host"  # a cookie set by the redirect, too
    # By name, not by IP address: a cookie jar keeps cookies for names only.
    endpoint = sandbox.url.replace("127.0.0.1", "localhost")
    async with KashFlow(endpoint, pdf_hosts=sandbox.pdf_hosts) as kf:
        assert await calls_with_cookies(sandbox, kf) == 0
    # The same calls through an ordinary cookie-keeping session do carry them.
    async with aiohttp.ClientSession() as keeping:
        shared = KashFlow(endpoint, pdf_hosts=sandbox.pdf_hosts, session=keeping)
        assert await calls_with_cookies(sandbox, shared) > 0
