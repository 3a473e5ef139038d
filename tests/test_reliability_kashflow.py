"""KashFlow misbehaving: slow, hung, broken, hostile or refusing — and what a visitor sees.

The sandbox KashFlow runs on a loopback port with its fault switches; the web application
talks to it through a gateway with a short timeout and bounded retries, so every fault has
a deadline the test can hold it to. Replies the sandbox could never send on its own (a DTD,
entities, a SOAP fault on a good request) are crafted by patching its reply writer; broken
and hostile PDFs by patching its renderer. PDF bombs are built here with pypdf and zlib.

Each case checks what a person would notice: the right human page (never a traceback,
never KashFlow's raw words), with KashFlow asked a bounded number of times, in order —
and that a merged PDF is either a valid file holding every invoice or refused. How long
each fault takes to explain, and what the PDF bombs cost in time and memory, are measured
by ``benchmarks/kashflow_faults.py`` and ``benchmarks/pdf_bombs.py``, not held to a
stopwatch here: a busy machine is slower, not wrong.
"""

from __future__ import annotations

import asyncio
import html
import io
import itertools
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from kashflow.client import Account
from kashflow.documents import MAX_PAGES, merge_pdfs, merged_pdf
from kashflow.errors import (
    ApiDisabled,
    BadCredentials,
    BadDocument,
    IpNotAuthorised,
    KashFlowError,
    NotFound,
    Rejected,
    Unavailable,
)
from kashflow.sandbox import STATUS_TEXTS, Sandbox, wire
from kashflow.sandbox.faults import PDF_FETCH
from kashflow.sandbox.printing import render_invoices
from tests.support import WebRig, web_rig
from tests.support.pdfs import (
    DEFLATE_MEGABYTES,
    HONEST_PAGE_TREE_LEVELS,
    LYING_PAGE_TREE_LEVELS,
    deflate_bomb,
    no_pages_pdf,
    one_page_pdf,
    page_tree_bomb,
)
from web.security import RedactingAccessLogger

Client = TestClient[Any, Any]

#: The gateway's knobs for the timeout tests: short, so each fault's deadline is short too.
TIMEOUT = 0.3
RETRIES = 2
RETRY_DELAY = 0.05
#: The timeout of tests whose KashFlow answers (at once, or with a refusal): generous, so a
#: busy machine rendering PDFs never turns an answer into a timeout.
PATIENT = 10.0
#: Parametrize a test with this to give its gateway the short timeout.
SHORT_TIMEOUT = pytest.mark.parametrize("gateway_timeout", [TIMEOUT], ids=["timeout 0.3s"])
QPDF = "/usr/bin/qpdf"
NOT_ANSWERING = "KashFlow isn't answering"
COULD_NOT_READ = "The invoice document could not be read"


@asynccontextmanager
async def fault_rig(tmp_path: Path, gateway_timeout: float) -> AsyncIterator[WebRig]:
    """The web door against the sandbox through a gateway with a deadline and retries."""
    options = {"timeout": gateway_timeout, "retries": RETRIES, "retry_delay": RETRY_DELAY}
    async with web_rig(tmp_path, gateway=options) as built:
        yield built


@pytest.fixture
def gateway_timeout() -> float:
    return PATIENT


@pytest.fixture
async def rig(tmp_path: Path, gateway_timeout: float) -> AsyncIterator[WebRig]:
    async with fault_rig(tmp_path, gateway_timeout) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    server = await aiohttp_server(rig.app, access_log_class=RedactingAccessLogger)
    client: Client = await aiohttp_client(server)
    return client


@pytest.fixture
def account(rig: WebRig) -> Account:
    return rig.kashflow.account(rig.sandbox.credentials("demo"))


@dataclass(frozen=True)
class Seen:
    status: int
    html: str
    retry_after: str | None


async def visit(client: Client, path: str) -> Seen:
    """One request; the page's text as a reader sees it (entities decoded)."""
    response = await client.get(path)
    text = html.unescape(await response.text(errors="replace"))
    return Seen(response.status, text, response.headers.get("Retry-After"))


async def visit_all(client: Client, paths: Sequence[str]) -> list[Seen]:
    return list(await asyncio.gather(*(visit(client, path) for path in paths)))


def calls(sandbox: Sandbox, operation: str) -> list[float]:
    """When each call of ``operation`` reached the sandbox (its own clock, on arrival)."""
    return [c.at for c in sandbox.calls if c.operation == operation]


def routes(rig: WebRig, code: str = "FOX01") -> list[str]:
    token = rig.mint(code)
    number = rig.sandbox.invoices("demo", code)[0].number
    return [f"/l/{token}", f"/l/{token}/invoice/{number}.pdf", f"/l/{token}/all.pdf"]


def assert_not_answering_page(seen: Seen) -> None:
    assert seen.status == 503
    assert NOT_ANSWERING in seen.html
    assert seen.retry_after == "60"
    assert "Traceback" not in seen.html


# -- slow, hung and broken -----------------------------------------------------------------


@SHORT_TIMEOUT
async def test_kashflow_slower_than_the_timeout_gets_the_not_answering_page(
    rig: WebRig, client: Client
) -> None:
    rig.sandbox.faults.latency_ms = 4 * TIMEOUT * 1000
    # The page and both PDF routes at once, as a visitor's browser might ask.
    paths = routes(rig)
    for seen in await visit_all(client, paths):
        assert_not_answering_page(seen)
    # Once one call of a page gives up the others are cancelled: never more than the retries.
    assert 3 <= len(calls(rig.sandbox, "GetCompanyDetails")) <= 3 * (RETRIES + 1)


@SHORT_TIMEOUT
async def test_a_hung_kashflow_is_given_up_on_after_each_retry_times_out(
    rig: WebRig, client: Client, account: Account
) -> None:
    rig.sandbox.faults.hang = float("inf")
    with pytest.raises(Unavailable) as caught:
        await account.company_details()
    # Each attempt was given up at the timeout, and no attempt was made after the last.
    assert caught.value.detail == "timed out"
    assert len(calls(rig.sandbox, "GetCompanyDetails")) == RETRIES + 1

    # The page and both PDF routes at once, as a visitor's browser might ask.
    for seen in await visit_all(client, routes(rig)):
        assert_not_answering_page(seen)


@SHORT_TIMEOUT
@pytest.mark.parametrize("fault", ["http_500", "malformed_xml", "reset"])
async def test_transport_faults_are_retried_with_bounded_backoff_then_explained(
    rig: WebRig, client: Client, account: Account, fault: str
) -> None:
    setattr(rig.sandbox.faults, fault, True)
    with pytest.raises(Unavailable):
        await account.company_details()

    arrivals = calls(rig.sandbox, "GetCompanyDetails")
    assert len(arrivals) == RETRIES + 1
    # The sandbox stamps each call as it arrives, after the gateway slept its backoff (at
    # least half the nominal delay, with jitter): a busy machine can only widen a gap.
    # How wide the gaps are is benchmarks/kashflow_faults.py's business.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for k, gap in enumerate(gaps):
        assert gap >= 0.5 * RETRY_DELAY * 2**k, (k, gap)

    # The page and both PDF routes at once, as a visitor's browser might ask.
    for seen in await visit_all(client, routes(rig)):
        assert_not_answering_page(seen)


async def test_an_outage_shorter_than_the_retries_is_invisible_to_the_visitor(
    rig: WebRig, client: Client
) -> None:
    path = routes(rig)[0]
    rig.sandbox.faults.http_500 = True
    rig.sandbox.faults.operations = frozenset({"GetCustomerByID"})

    async def heal() -> None:
        await rig.sandbox.wait_for_call("GetCustomerByID", count=RETRIES, within=60)
        rig.sandbox.faults.clear()

    healer = asyncio.create_task(heal())
    seen = await visit(client, path)
    await healer

    assert seen.status == 200
    assert len(calls(rig.sandbox, "GetCustomerByID")) == RETRIES + 1


async def test_throttling_with_a_short_retry_after_is_invisible_to_the_visitor(
    rig: WebRig, client: Client
) -> None:
    path = routes(rig)[0]
    rig.sandbox.faults.throttle = 1
    rig.sandbox.faults.retry_after = "1"
    rig.sandbox.faults.operations = frozenset({"GetCustomerByID"})
    seen = await visit(client, path)
    assert seen.status == 200
    first, second = calls(rig.sandbox, "GetCustomerByID")
    # Not asked again before KashFlow said (stamped on arrival: load only adds to the gap).
    assert second - first >= 1.0


async def test_throttling_for_longer_than_a_visitor_can_wait_is_explained_at_once(
    rig: WebRig, client: Client
) -> None:
    rig.sandbox.faults.throttle = 100
    rig.sandbox.faults.retry_after = "3600"
    paths = routes(rig)
    for seen in await visit_all(client, paths):
        assert_not_answering_page(seen)
    # Each route asked once and believed the hour it was told: nothing was retried (and so
    # nobody was kept waiting for it).
    assert len(rig.sandbox.calls) <= len(paths) * 3


# -- KashFlow saying no --------------------------------------------------------------------

_IP_REFUSAL = STATUS_TEXTS.ip_not_allowed.format(ip="127.0.0.1")
_GATEWAY_CALLS: dict[str, Callable[[Account, WebRig], Awaitable[object]]] = {
    "GetCompanyDetails": lambda a, r: a.company_details(),
    "GetCustomerByID": lambda a, r: a.customer_by_id(r.sandbox.customer("demo", "FOX01").id),
    "GetInvoice": lambda a, r: a.invoice(r.sandbox.invoices("demo", "FOX01")[0].number),
    "PrintInvoice": lambda a, r: a.invoice_pdf(r.sandbox.invoices("demo", "FOX01")[0].number),
}


@pytest.mark.parametrize(
    ("detail", "operation", "error", "route", "status", "title"),
    [
        (STATUS_TEXTS.bad_credentials, "GetCompanyDetails", BadCredentials, 0, 503,
         "This link needs renewing"),
        (_IP_REFUSAL, "GetCustomerByID", IpNotAuthorised, 0, 503,
         "KashFlow turned this service away"),
        (STATUS_TEXTS.api_disabled, "GetCompanyDetails", ApiDisabled, 2, 503,
         "Invoices are not being shared right now"),
        (STATUS_TEXTS.no_customer_with_id, "GetCustomerByID", NotFound, 0, 404,
         "This link is not valid"),
        (STATUS_TEXTS.no_invoice, "GetInvoice", NotFound, 1, 404, "Invoice not found"),
        (STATUS_TEXTS.no_invoice, "PrintInvoice", NotFound, 1, 404, "Invoice not found"),
        ("Object reference not set to an instance of an object.", "PrintInvoice", Rejected, 1,
         502, "KashFlow could not answer"),
    ],
    ids=[
        "bad credentials", "ip not allowed", "api disabled", "no customer", "no invoice",
        "print: no invoice", "anything else",
    ],
)  # fmt: skip
async def test_each_status_no_is_its_own_error_and_page_and_is_never_retried(
    rig: WebRig,
    client: Client,
    account: Account,
    detail: str,
    operation: str,
    error: type[KashFlowError],
    route: int,
    status: int,
    title: str,
) -> None:
    rig.sandbox.faults.status_detail[operation] = detail

    with pytest.raises(KashFlowError) as caught:
        await _GATEWAY_CALLS[operation](account, rig)
    assert type(caught.value) is error
    assert caught.value.detail == detail
    # A refusal is an answer: asking again would only hammer KashFlow (and its lockouts).
    assert len(calls(rig.sandbox, operation)) == 1

    seen = await visit(client, routes(rig)[route])
    assert seen.status == status
    assert title in seen.html
    assert detail not in seen.html  # KashFlow's own words stay in the log
    assert "Traceback" not in seen.html


async def test_kashflows_own_busy_answer_is_retried_then_shown_as_not_answering(
    rig: WebRig, client: Client, account: Account
) -> None:
    rig.sandbox.faults.status_detail["GetCompanyDetails"] = STATUS_TEXTS.transient

    with pytest.raises(Unavailable):
        await account.company_details()
    # "Temporarily unavailable, try again later" is KashFlow asking for another try.
    assert len(calls(rig.sandbox, "GetCompanyDetails")) == 1 + RETRIES

    seen = await visit(client, routes(rig)[0])
    assert seen.status == 503 and NOT_ANSWERING in seen.html
    assert seen.retry_after is not None


# -- hostile and unreadable replies --------------------------------------------------------

_real_response = wire.response
_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
_LAUGHS = (
    b'<!DOCTYPE soap:Envelope [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>"
)


def _with_doctype(doctype: bytes, entity: bytes) -> Callable[[bytes], bytes]:
    """A reply carrying ``doctype`` with every StatusDetail replaced by ``entity``."""

    def craft(body: bytes) -> bytes:
        head, _, rest = body.partition(b"<StatusDetail")
        rest = rest.split(b"</StatusDetail>", 1)[-1] if b"</StatusDetail>" in rest else rest
        body = head + b"<StatusDetail>" + entity + b"</StatusDetail>" + rest
        return body.replace(_DECLARATION, _DECLARATION + doctype, 1)

    return craft


def _refusal_by_entity(body: bytes) -> bytes:
    # Were the entity expanded, this would read as a wrong-password refusal.
    crafted = _with_doctype(
        b'<!DOCTYPE soap:Envelope [<!ENTITY e "Incorrect username or password">]>', b"&e;"
    )(body)
    return crafted.replace(b"<Status>OK</Status>", b"<Status>NO</Status>")


_DTD = ("a DTD in the reply",)


@dataclass(frozen=True)
class Hostile:
    craft: Callable[[bytes], bytes]
    error: type[KashFlowError]
    #: What the gateway says about it in ``detail`` (any one of these).
    why: tuple[str, ...]


HOSTILE_REPLIES: dict[str, Hostile] = {
    # libxml2 refuses the amplification itself before the gateway sees the DTD.
    "billion laughs": Hostile(_with_doctype(_LAUGHS, b"&lol9;"), Unavailable, ("not XML", *_DTD)),
    "external entity": Hostile(
        _with_doctype(b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', b"&xxe;"),
        Unavailable,
        _DTD,
    ),
    "external dtd": Hostile(
        _with_doctype(b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">', b"x"),
        Unavailable,
        _DTD,
    ),
    "parameter entity": Hostile(
        _with_doctype(b'<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', b"x"),
        Unavailable,
        _DTD,
    ),
    "entity posing as a refusal": Hostile(_refusal_by_entity, Unavailable, _DTD),
    "bare doctype": Hostile(_with_doctype(b"<!DOCTYPE soap:Envelope>", b""), Unavailable, _DTD),
    "html": Hostile(
        lambda body: b"<html><body>Service Unavailable</body></html>",
        Unavailable,
        ("no SOAP body",),
    ),
    "empty": Hostile(lambda body: b"", Unavailable, ("not XML",)),
    "wrong reply element": Hostile(
        lambda body: body.replace(b"GetCustomerByIDResponse", b"GetCustomersResponse"),
        Unavailable,
        ("unexpected reply element",),
    ),
    "a value of the wrong type": Hostile(
        lambda body: body.replace(b"<CustomerID>", b"<CustomerID>x", 1),
        Unavailable,
        ("a value of the wrong type",),
    ),
    "soap fault": Hostile(
        lambda body: wire.fault("Server was unable to process request.", "soap:Server"),
        Rejected,
        ("SOAP fault",),
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE_REPLIES))
async def test_hostile_or_unreadable_replies_are_refused_never_expanded(
    rig: WebRig, client: Client, account: Account, name: str
) -> None:
    hostile = HOSTILE_REPLIES[name]
    error = hostile.error
    customer_id = rig.sandbox.customer("demo", "FOX01").id

    def crafted_response(*args: Any, **kwargs: Any) -> bytes:
        return hostile.craft(_real_response(*args, **kwargs))

    with mock.patch.object(wire, "response", crafted_response):
        with pytest.raises(KashFlowError) as caught:
            await account.customer_by_id(customer_id)
        tries = len(calls(rig.sandbox, "GetCustomerByID"))
        seen = await visit(client, routes(rig)[0])

    assert type(caught.value) is error
    assert any(why in caught.value.detail for why in hostile.why), caught.value.detail
    assert tries == (RETRIES + 1 if error is Unavailable else 1)
    for said in (str(caught.value), caught.value.detail, seen.html):
        assert "root:" not in said and "lollol" not in said
        assert "Incorrect username" not in said
    assert seen.status == (503 if error is Unavailable else 502)
    assert "Traceback" not in seen.html


# -- documents -----------------------------------------------------------------------------


async def qpdf_check(pdf: bytes, where: Path) -> str:
    """``qpdf --check`` on the document; fails, never skips, when qpdf is missing."""
    if shutil.which(QPDF) is None:
        pytest.fail(f"{QPDF} is missing: install Debian's qpdf (scripts/system-packages)")
    path = where / "checked.pdf"
    path.write_bytes(pdf)
    process = await asyncio.create_subprocess_exec(
        QPDF, "--check", str(path), stdout=PIPE, stderr=STDOUT
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    report = output.decode("utf-8", "replace")
    assert process.returncode == 0, report
    return report


async def test_merged_pdfs_pass_qpdf_check_and_hold_every_page(
    rig: WebRig, client: Client, account: Account, tmp_path: Path
) -> None:
    token = rig.mint("IVY01")
    for what in ("all", "unpaid"):
        response = await client.get(f"/l/{token}/{what}.pdf")
        assert response.status == 200
        report = await qpdf_check(await response.read(), tmp_path)
        assert "No syntax or stream encoding errors found" in report

    records = rig.sandbox.invoices("demo")
    longest = max(records, key=lambda r: len(r.lines))
    numbers = [r.number for r in records[:40]] + [longest.number]
    singles = [await account.invoice_pdf(n) for n in numbers]
    merged = await merged_pdf(account, numbers)
    await qpdf_check(merged, tmp_path)
    expected = sum(len(PdfReader(io.BytesIO(pdf)).pages) for pdf in singles)
    assert len(PdfReader(io.BytesIO(merged)).pages) == expected > len(numbers)


def _truncated(pdf: bytes) -> bytes:
    return pdf[: len(pdf) // 2]


BAD_DOCUMENTS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncated,
    "no pages": lambda pdf: no_pages_pdf(),
    "pdf header then junk": lambda pdf: b"%PDF-1.7\n" + bytes(range(256)) * 40,
    "page tree bomb": lambda pdf: page_tree_bomb(20, claimed=1),
}


@contextmanager
def sandbox_prints(victim: int, spoil: Callable[[bytes], bytes]) -> Iterator[None]:
    """The sandbox's PrintInvoice documents, with invoice ``victim``'s spoiled."""

    def render(company: Any, pairs: Sequence[tuple[Any, Any]]) -> bytes:
        pdf = render_invoices(company, pairs)
        return spoil(pdf) if any(inv.number == victim for inv, _ in pairs) else pdf

    with mock.patch("kashflow.sandbox.server.render_invoices", render):
        yield


@pytest.mark.parametrize("kind", list(BAD_DOCUMENTS))
async def test_a_bad_invoice_document_is_reported_never_merged_into_garbage(
    rig: WebRig, client: Client, account: Account, kind: str
) -> None:
    numbers = [r.number for r in rig.sandbox.invoices("demo", "BRIGHT01")]
    victim = numbers[len(numbers) // 2]
    token = rig.mint("BRIGHT01")

    with sandbox_prints(victim, BAD_DOCUMENTS[kind]):
        with pytest.raises(BadDocument):
            await merged_pdf(account, numbers)
        seen = await visit(client, f"/l/{token}/all.pdf")
        alone = await visit(client, f"/l/{token}/invoice/{victim}.pdf")

    for answer in (seen, alone):
        assert answer.status == 502
        assert COULD_NOT_READ in answer.html
    # The same link works again once KashFlow serves a sound document (a new version of
    # the invoice: the sandbox caches documents by version).
    rig.sandbox.mark_paid("demo", victim, Decimal("0.01"))
    healed = await client.get(f"/l/{token}/all.pdf")
    assert healed.status == 200
    assert healed.content_type == "application/pdf"


@pytest.fixture(scope="module")
def one_page() -> bytes:
    return one_page_pdf()


def test_a_pdf_claiming_more_pages_than_the_cap_is_refused(one_page: bytes) -> None:
    bomb = page_tree_bomb(HONEST_PAGE_TREE_LEVELS)  # 8192 pages, honestly counted
    assert len(bomb) < 4096
    assert MAX_PAGES < 2**HONEST_PAGE_TREE_LEVELS
    with pytest.raises(BadDocument, match=f"more than {MAX_PAGES} pages"):
        merge_pdfs([one_page, bomb])


def test_a_page_tree_bomb_that_lies_about_its_count_is_refused(one_page: bytes) -> None:
    bomb = page_tree_bomb(LYING_PAGE_TREE_LEVELS, claimed=1)  # a billion pages, 30 objects
    assert len(bomb) < 8192
    # Its cost before the refusal (about two seconds, tens of MiB): benchmarks/pdf_bombs.py.
    with pytest.raises(BadDocument):
        merge_pdfs([one_page, bomb])


def test_a_deeply_compressed_stream_is_merged_without_being_inflated(one_page: bytes) -> None:
    bomb = deflate_bomb(DEFLATE_MEGABYTES)
    assert len(bomb) < 64 * 1024  # 256 MiB of content in under 64 KiB
    merged = merge_pdfs([one_page, bomb])
    # Inflated, the stream alone would be 256 MiB; the merge carries it as it came.
    assert len(merged) < len(one_page) + len(bomb) + 4096
    assert len(PdfReader(io.BytesIO(merged)).pages) == 2


# -- many visitors at once ----------------------------------------------------------------


def most_prints_at_once(sandbox: Sandbox) -> int:
    """The most invoices being printed at any moment, as far as the sandbox can tell.

    Each print is a PrintInvoice call and then the download of the PDF it points at; the
    download arriving proves the print it followed is nearly done, so counting prints
    begun less downloads begun, in the order they arrived, never overstates how many
    were being printed at once."""
    begun = downloads = most = 0
    for call in sandbox.calls:
        if call.operation == "PrintInvoice":
            begun += 1
        elif call.operation == PDF_FETCH:
            downloads += 1
        most = max(most, begun - downloads)
    return most


async def test_one_merged_document_per_link_and_bounded_calls_per_account(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    async with web_rig(
        tmp_path,
        latency_ms=30,
        core_config={"pdf_concurrency": 3},
        gateway={"timeout": PATIENT},
    ) as rig:
        server = await aiohttp_server(rig.app)
        client: Client = await aiohttp_client(server)

        # Eight visitors ask for one link's merged PDF at once: it is built once.
        token = rig.mint("IVY01")
        answers = await asyncio.gather(*(client.get(f"/l/{token}/all.pdf") for _ in range(8)))
        assert [a.status for a in answers] == [200] * 8
        documents = {await a.read() for a in answers}
        assert len(documents) == 1
        invoices = len(rig.sandbox.invoices("demo", "IVY01"))
        assert len(PdfReader(io.BytesIO(documents.pop())).pages) > invoices
        assert len(calls(rig.sandbox, "PrintInvoice")) == invoices  # not 8 x

        # Three links of the same account at once: KashFlow is asked to print at most
        # ``pdf_concurrency`` invoices at a time for the account, not 3 per link.
        rig.sandbox.calls.clear()
        codes = ("IVY01", "BRIGHT01", "HOLL01")
        tokens = [rig.mint(code) for code in codes]
        answers = await asyncio.gather(*(client.get(f"/l/{t}/all.pdf") for t in tokens))
        assert [a.status for a in answers] == [200] * 3
        printed = sum(len(rig.sandbox.invoices("demo", code)) for code in codes)
        assert len(calls(rig.sandbox, "PrintInvoice")) == printed
        assert 2 <= most_prints_at_once(rig.sandbox) <= 3
