"""A link's feeds over real sockets: its due dates as a calendar and its invoices as JSON.

Each assertion is about what a calendar app or an integration would get: the events a
calendar shows (parsed back with ``icalendar``), the JSON checked against the schema the
docs publish, and the same protections as the page (the one "not valid" answer, the
headers, no token in the logs).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from icalendar import Calendar, Event

from kashflow.sandbox import InvoiceRecord
from permalink.activity import ActivityLog
from permalink.links import seal
from tests.support import PUBLIC_BASE_URL, WebRig, web_rig
from web.security import RedactingAccessLogger

Client = TestClient[Any, Any]

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "link-json.v1.schema.json"
SECURITY_HEADERS = ("Referrer-Policy", "Cache-Control", "X-Robots-Tag", "Content-Security-Policy")
LIMIT = 5


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path, invalid_link_limit=LIMIT) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    server = await aiohttp_server(rig.app, access_log_class=RedactingAccessLogger)
    client: Client = await aiohttp_client(server)
    return client


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def events(body: bytes) -> list[Event]:
    calendar = Calendar.from_ical(body)
    return [c for c in calendar.walk("VEVENT") if isinstance(c, Event)]


def owed(records: tuple[InvoiceRecord, ...]) -> list[InvoiceRecord]:
    return [r for r in records if not r.paid and r.outstanding > 0]


def gbp(amount: Decimal) -> str:
    return f"£{amount:,.2f}"


async def calendar_of(client: Client, token: str) -> list[Event]:
    response = await client.get(f"/l/{token}/due.ics")
    assert response.status == 200
    assert response.content_type == "text/calendar"
    return events(await response.read())


# -- the calendar --------------------------------------------------------------------------


async def test_calendar_has_an_all_day_event_per_unpaid_invoice_with_a_reminder(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("IVY01", "all")
    records = rig.sandbox.invoices("demo", "IVY01")
    expected = owed(records)
    assert expected and len(expected) < len(records), "the seed mixes paid and unpaid"

    shown = await calendar_of(client, token)

    by_number = {r.number: r for r in expected}
    assert len(shown) == len(expected)
    for event in shown:
        match = re.fullmatch(r"Invoice (\d+) due — .*", str(event["SUMMARY"]))
        assert match is not None
        number = int(match[1])
        record = by_number.pop(number)
        assert str(event["SUMMARY"]) == f"Invoice {number} due — {gbp(record.outstanding)}"
        assert event.decoded("DTSTART") == record.due  # a date: an all-day event
        assert event.decoded("DTEND") == record.due + timedelta(days=1)
        assert str(event["URL"]) == f"{PUBLIC_BASE_URL}/l/{token}"
        assert f"{PUBLIC_BASE_URL}/l/{token}" in str(event["DESCRIPTION"])
        (alarm,) = event.walk("VALARM")
        assert alarm.decoded("TRIGGER") == timedelta(days=-1)
        assert str(alarm["ACTION"]) == "DISPLAY"
    assert by_number == {}


def euros_in_german(amount: Decimal) -> str:
    return f"{amount:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".") + "\xa0€"


async def test_a_german_clients_calendar_speaks_german(rig: WebRig, client: Client) -> None:
    token = rig.mint("CORV01", "all")
    english = {str(e["UID"]) for e in await calendar_of(client, token)}
    await rig.core.store.business.set_customer_language("demo", "CORV01", "de")
    response = await client.get(f"/l/{token}/due.ics")
    assert response.status == 200
    body = await response.read()
    calendar = Calendar.from_ical(body)
    assert str(calendar["X-WR-CALNAME"]) == "Rechnungen von Northwind Studio Ltd"
    shown = events(body)
    expected = {r.number: r for r in owed(rig.sandbox.invoices("demo", "CORV01"))}
    assert expected and {str(e["UID"]) for e in shown} == english  # the same events
    for event in shown:
        number = int(str(event["SUMMARY"]).split()[1])
        record = expected[number]
        summary = f"Rechnung {number} fällig — {euros_in_german(record.outstanding)}"
        assert str(event["SUMMARY"]) == summary
        assert f"zu zahlen bis {record.due:%d.%m.%Y}" in str(event["DESCRIPTION"])
        (alarm,) = event.walk("VALARM")
        assert str(alarm["DESCRIPTION"]) == f"Morgen: {summary}"
    # A browser asking for Welsh does not override the accountant's choice; for a client
    # without one, it decides.
    welsh = await client.get(f"/l/{token}/due.ics", headers={"Accept-Language": "cy"})
    assert "Rechnung" in str(events(await welsh.read())[0]["SUMMARY"])
    other = rig.mint("IVY01", "all")
    asked = await client.get(f"/l/{other}/due.ics", headers={"Accept-Language": "cy"})
    assert str(events(await asked.read())[0]["SUMMARY"]).startswith("Anfoneb ")


async def test_calendar_uids_are_stable_so_calendars_update_instead_of_duplicating(
    rig: WebRig, client: Client
) -> None:
    every = rig.mint("FOX01", "all")
    unpaid = rig.mint("FOX01", "unpaid")
    first = {str(e["SUMMARY"]): str(e["UID"]) for e in await calendar_of(client, every)}
    again = {str(e["SUMMARY"]): str(e["UID"]) for e in await calendar_of(client, every)}
    other_link = {str(e["SUMMARY"]): str(e["UID"]) for e in await calendar_of(client, unpaid)}
    assert first == again == other_link
    assert len(set(first.values())) == len(first)
    assert all(uid.endswith("@invoices.example.test") for uid in first.values())
    assert all("demo" not in uid for uid in first.values())  # no username in the UID

    # A part payment changes the event's amount under the same UID; paying it off drops it.
    number = owed(rig.sandbox.invoices("demo", "FOX01"))[0].number
    uid = next(u for s, u in first.items() if s.startswith(f"Invoice {number} "))
    rig.sandbox.mark_paid("demo", number, Decimal("1.00"))
    part_paid = {str(e["UID"]): str(e["SUMMARY"]) for e in await calendar_of(client, every)}
    record = rig.sandbox.invoice("demo", number)
    assert part_paid[uid] == f"Invoice {number} due — {gbp(record.outstanding)}"
    rig.sandbox.mark_paid("demo", number)
    paid = {str(e["UID"]) for e in await calendar_of(client, every)}
    assert uid not in paid
    assert paid == set(first.values()) - {uid}


async def test_calendar_leaves_out_credit_notes_and_paid_invoices(
    rig: WebRig, client: Client
) -> None:
    records = rig.sandbox.invoices("demo", "DUNE01")
    credit = [r for r in records if r.is_credit_note]
    assert credit, "the seed gives this customer a credit note"

    shown = await calendar_of(client, rig.mint("DUNE01", "all"))

    numbers = {int(str(e["SUMMARY"]).split()[1]) for e in shown}
    assert numbers == {r.number for r in owed(records)}
    assert not numbers & {r.number for r in credit}


async def test_a_one_invoice_link_calendar_holds_that_invoice_only(
    rig: WebRig, client: Client
) -> None:
    record = owed(rig.sandbox.invoices("demo", "IVY01"))[0]
    shown = await calendar_of(client, rig.mint("IVY01", f"invoice:{record.number}"))

    assert [str(e["SUMMARY"]) for e in shown] == [
        f"Invoice {record.number} due — {gbp(record.outstanding)}"
    ]


async def test_a_customer_with_nothing_to_pay_gets_an_empty_but_valid_calendar(
    rig: WebRig, client: Client
) -> None:
    response = await client.get(f"/l/{rig.mint('HOLL01', 'all')}/due.ics")
    body = await response.read()

    assert response.status == 200
    assert events(body) == []
    calendar = Calendar.from_ical(body)
    assert str(calendar["X-WR-CALNAME"]) == "Invoices from Northwind Studio Ltd"
    assert str(calendar["VERSION"]) == "2.0"
    # Subscribed calendars are asked to look again every few hours, in both dialects.
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT6H" in body.decode()
    assert "X-PUBLISHED-TTL:PT6H" in body.decode()


async def test_the_page_offers_the_calendar_as_a_subscription_and_a_download(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("IVY01", "unpaid")
    html = await (await client.get(f"/l/{token}")).text()
    host = PUBLIC_BASE_URL.split("://", 1)[1]

    assert "Add due dates to your calendar" in html
    assert f'href="webcal://{host}/l/{token}/due.ics"' in html
    assert f'href="{PUBLIC_BASE_URL}/l/{token}/due.ics" download="due-dates.ics"' in html
    one_paid = rig.sandbox.invoices("demo", "HOLL01")[0].number
    paid_up = await (await client.get(f"/l/{rig.mint('HOLL01', f'invoice:{one_paid}')}")).text()
    assert "Add due dates to your calendar" not in paid_up  # one paid invoice: nothing to add


# -- the JSON view -------------------------------------------------------------------------


async def test_json_view_matches_the_schema_for_every_customer(
    rig: WebRig, client: Client, schema: dict[str, Any]
) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for customer in rig.sandbox.customers("demo"):
        for scope in ("all", "unpaid"):
            response = await client.get(f"/l/{rig.mint(customer.code, scope)}.json")
            assert response.status == 200, customer.code
            assert response.content_type == "application/json"
            document = json.loads(await response.text())
            errors = [e.message for e in validator.iter_errors(document)]
            assert errors == [], (customer.code, scope, errors)


async def test_json_view_lists_the_invoices_as_the_page_does(rig: WebRig, client: Client) -> None:
    token = rig.mint("BRIGHT01", "all")
    document = json.loads(await (await client.get(f"/l/{token}.json")).text())
    records = rig.sandbox.invoices("demo", "BRIGHT01")
    today = date.today()

    assert document["version"] == 1
    assert document["business"] == {"name": "Northwind Studio Ltd"}
    assert document["customer"] == {"code": "BRIGHT01", "name": "Brightwater Cafe"}
    assert document["scope"] == "all"
    assert document["as_of"] == today.isoformat()
    assert document["link"] == f"{PUBLIC_BASE_URL}/l/{token}"
    assert document["all_pdf_url"] == f"{PUBLIC_BASE_URL}/l/{token}/all.pdf"
    newest_first = sorted(records, key=lambda r: (r.issued, r.number), reverse=True)
    assert [i["number"] for i in document["invoices"]] == [r.number for r in newest_first]
    for entry, record in zip(document["invoices"], newest_first, strict=True):
        assert entry["issued"] == record.issued.isoformat()
        assert entry["due"] == record.due.isoformat()
        assert entry["currency"] == "GBP"
        assert Decimal(entry["total"]) == record.total
        assert Decimal(entry["paid"]) == record.amount_paid
        assert Decimal(entry["outstanding"]) == record.outstanding
        assert entry["pdf_url"] == f"{PUBLIC_BASE_URL}/l/{token}/invoice/{record.number}.pdf"
    statuses = {i["status"] for i in document["invoices"]}
    assert statuses <= {"paid", "part-paid", "due", "overdue", "credit"}
    assert document["totals"] == [
        {
            "currency": "GBP",
            "total": f"{sum((r.total for r in records), Decimal(0)):.2f}",
            "paid": f"{sum((r.amount_paid for r in records), Decimal(0)):.2f}",
            "outstanding": f"{sum((r.outstanding for r in records), Decimal(0)):.2f}",
        }
    ]
    # The PDF URLs it gives work.
    pdf = await client.get(document["invoices"][0]["pdf_url"].removeprefix(PUBLIC_BASE_URL))
    assert pdf.status == 200 and pdf.content_type == "application/pdf"


async def test_json_view_keeps_each_currency_apart(rig: WebRig, client: Client) -> None:
    document = json.loads(await (await client.get(f"/l/{rig.mint('CORV01')}.json")).text())
    currencies = {i["currency"] for i in document["invoices"]}

    assert "EUR" in currencies
    assert {t["currency"] for t in document["totals"]} == currencies
    for total in document["totals"]:
        mine = [i for i in document["invoices"] if i["currency"] == total["currency"]]
        assert Decimal(total["outstanding"]) == sum(Decimal(i["outstanding"]) for i in mine)


# -- the same protections as the page ------------------------------------------------------


async def test_broken_links_get_the_pages_own_not_valid_answer(rig: WebRig, client: Client) -> None:
    reference = await (await client.get("/l/not-a-token")).read()
    good = rig.mint("FOX01")
    revoked = rig.link("FOX01")
    await rig.registry.add(
        "demo",
        customer_code="FOX01",
        customer_name="Foxglove Interiors",
        scope="all",
        created=revoked.issued,
        minted_by="settings",
        link_id=revoked.link_id,
    )
    await rig.registry.revoke("demo", revoked.link_id)
    tokens = {
        "tampered": good[:40] + ("A" if good[40] != "A" else "B") + good[41:],
        "expired": rig.mint("FOX01", issued_ago=7200, expires_in=3600),
        "revoked": seal(revoked, rig.keyring),
        "customer gone": rig.mint("FOX01", customer_id=999_999),
    }
    for cause, token in tokens.items():
        rig.clock.advance(61)  # a fresh minute per cause: under the throttle
        for path in (f"/l/{token}.json", f"/l/{token}/due.ics"):
            response = await client.get(path)
            assert response.status == 404, (cause, path)
            assert await response.read() == reference, (cause, path)
            assert response.content_type == "text/html"


async def test_feeds_carry_the_headers_and_count_towards_the_throttle(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("FOX01")
    for path in (f"/l/{token}.json", f"/l/{token}/due.ics", "/l/bad.json", "/l/bad/due.ics"):
        response = await client.get(path)
        for name in SECURITY_HEADERS:
            assert name in response.headers, (path, name)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    # Two failures above; three more reach the limit, and the page is throttled too.
    for n in range(LIMIT - 2):
        assert (await client.get(f"/l/guess-{n}.json")).status == 404
    assert (await client.get("/l/guess/due.ics")).status == 429
    assert (await client.get("/l/guess")).status == 429
    assert (await client.get(f"/l/{token}.json")).status == 200  # a good link is never refused


async def test_feeds_never_put_the_token_in_a_log_line_or_the_activity_log(
    rig: WebRig, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = rig.mint("FOX01")

    assert (await client.get(f"/l/{token}.json")).status == 200
    assert (await client.get(f"/l/{token}/due.ics")).status == 200
    assert (await client.get(f"/l/{token[:-3]}.json")).status == 404
    await client.close()  # the access log lines are written once the responses are done

    assert token not in caplog.text
    assert token[:-3] not in caplog.text
    assert '"GET /l/….json HTTP/1.1" 200' in caplog.text
    assert '"GET /l/…/due.ics HTTP/1.1" 200' in caplog.text
    # A calendar polls every few hours: feeds are not recorded as the link being opened.
    assert await ActivityLog(rig.db).page("demo") == []
