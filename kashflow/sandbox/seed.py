"""The seeded accounts: a design studio with a realistic ledger, a second company, and two
accounts whose API settings turn callers away.

Everything is derived from one ``random.Random(seed)`` and dates count back from ``today``,
so the same seed and day give the same books, and "overdue" always means overdue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final

from kashflow.models import Credentials
from kashflow.sandbox.ledger import Account, Ledger, NewLine
from kashflow.sandbox.records import Company, CustomerRecord, money

DEMO: Final = Credentials("demo", "demo-api-pass")
SECOND: Final = Credentials("second", "second-api-pass")
NOAPI: Final = Credentials("noapi", "noapi-pass")
IPLOCKED: Final = Credentials("iplocked", "iplocked-pass")
#: The AutoAuth key KashFlow would show the ``iplocked`` account's owner (a public fixture).
IPLOCKED_AUTO_AUTH_KEY: Final = "5A1B7C3D-0E2F-4A6B-8C9D-1E2F3A4B5C6D"

STANDARD = Decimal("20")
ZERO_RATED = Decimal("0")
EXEMPT = Decimal("-1")


@dataclass(frozen=True, slots=True)
class Service:
    description: str
    rate: Decimal
    vat_rate: Decimal = STANDARD
    product_id: int = 0
    product_name: str = ""


CATALOGUE: Final = (
    Service("Brand identity workshop", Decimal("950.00"), product_id=301, product_name="WORKSHOP"),
    Service("Website design - day rate", Decimal("650.00"), product_id=302, product_name="WEBDAY"),
    Service("Photography - half day", Decimal("420.00"), product_id=303, product_name="PHOTO-HD"),
    Service("Print management", Decimal("180.00")),
    Service(
        "Hosting and maintenance (monthly)",
        Decimal("85.00"),
        product_id=305,
        product_name="HOSTING",
    ),
    Service("Copywriting - per page", Decimal("120.00")),
    Service("Illustration", Decimal("310.00")),
    Service("Motion graphics - per second", Decimal("42.50")),
)
EXEMPT_LINE: Final = Service("Insurance premium recharge", Decimal("64.00"), EXEMPT)
TRAVEL_LINE: Final = Service("Rail travel", Decimal("37.40"), ZERO_RATED)


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    code: str
    name: str
    first: str
    last: str
    email: str
    address: tuple[str, ...]
    postcode: str
    payment_terms: int = 30
    currency_id: int = 1
    country: tuple[str, str] = ("United Kingdom", "GB")


DEMO_CUSTOMERS: Final = (
    CustomerSpec(
        "ACME01",
        "Acme Fabrication Ltd",
        "Priya",
        "Shah",
        "accounts@acme-fab.example",
        ("Unit 4, Riverside Works", "Mill Lane", "Leeds", ""),
        "LS10 1AB",
    ),
    CustomerSpec(
        "BRIGHT01",
        "Brightwater Cafe",
        "Tom",
        "Okafor",
        "accounts@brightwater.example; owner@brightwater.example",
        ("12 Harbour Street", "Whitby", "North Yorkshire", ""),
        "YO21 3PU",
        14,
    ),
    CustomerSpec(
        "CORV01",
        "Corvid Analytics GmbH",
        "Lena",
        "Vogel",
        "billing@corvid.example",
        ("Torstrasse 110", "Berlin", "", ""),
        "10119",
        30,
        2,
        ("Germany", "DE"),
    ),
    CustomerSpec(
        "DUNE01",
        "Dunes & Daughters",
        "Maggie",
        "Dune",
        "maggie@dunes.example",
        ("3 Sandpiper Row", "St Ives", "Cornwall", ""),
        "TR26 1LP",
    ),
    CustomerSpec(
        "ELM01",
        "Elm Street Bakery",
        "Grace",
        "Adeyemi",
        "hello@elmbakery.example",
        ("88 Elm Street", "Bristol", "", ""),
        "BS1 4DJ",
    ),
    CustomerSpec(
        "FOX01",
        "Foxglove Interiors",
        "Ruth",
        "Marlow",
        "ruth@foxglove.example",
        ("The Old Chapel", "Church Road", "Hebden Bridge", ""),
        "HX7 8AD",
    ),
    CustomerSpec(
        "GRAN01",
        "Granite Row Builders",
        "Dev",
        "Patel",
        "office@graniterow.example",
        ("Yard 2, Quarry Road", "Sheffield", "", ""),
        "S6 2BN",
        30,
    ),
    CustomerSpec(
        "HOLL01",
        "Hollow Oak Partners",
        "Sam",
        "Whitfield",
        "sam@hollowoak.example",
        ("Hollow Oak House", "Market Place", "Ludlow", ""),
        "SY8 1AX",
        7,
    ),
    CustomerSpec(
        "IVY01",
        "Ivy Lane Dental",
        "Olu",
        "Bankole",
        "practice@ivylane.example",
        ("1 Ivy Lane", "Canterbury", "Kent", ""),
        "CT1 2QT",
    ),
)

SECOND_CUSTOMERS: Final = (
    CustomerSpec(
        "JETTY01",
        "Jetty Marine Supplies",
        "Alan",
        "Rowe",
        "alan@jettymarine.example",
        ("Quay Building", "Falmouth", "", ""),
        "TR11 3QA",
    ),
    CustomerSpec(
        "KEEL01",
        "Keel & Compass Ltd",
        "Nia",
        "Evans",
        "accounts@keelcompass.example",
        ("7 Chart Street", "Bristol", "", ""),
        "BS1 6XN",
    ),
    CustomerSpec(
        "LANT01",
        "Lantern Quay Hotel",
        "Jo",
        "Keane",
        "frontdesk@lanternquay.example",
        ("The Quay", "Padstow", "", ""),
        "PL28 8AQ",
    ),
)


@dataclass(frozen=True, slots=True)
class Draft:
    """An invoice before numbering: numbers follow issue dates, as KashFlow's do."""

    code: str
    issued: date
    lines: tuple[NewLine, ...]
    paid_share: Decimal  # 0 = unpaid, 1 = paid, between = part-paid
    reference: str = ""
    currency: str | None = None
    exchange_rate: Decimal = Decimal("1.0000")
    cis: bool = False


def build_ledger(*, seed: int = 7, today: date | None = None) -> Ledger:
    today = today or date.today()
    rng = random.Random(seed)
    ledger = Ledger()
    ledger.add(_demo_account(rng, today))
    ledger.add(_second_account(rng, today))
    ledger.add(Account(NOAPI.username, NOAPI.password, _quiet_company(), api_enabled=False))
    ledger.add(
        Account(
            IPLOCKED.username,
            IPLOCKED.password,
            _locked_company(),
            ip_restricted=True,
            auto_auth_key=IPLOCKED_AUTO_AUTH_KEY,
        )
    )
    return ledger


def _demo_account(rng: random.Random, today: date) -> Account:
    company = Company(
        name="Northwind Studio Ltd",
        address=("2nd Floor, 14 Canal Wharf", "Manchester", "", ""),
        postcode="M1 3LE",
        email="accounts@northwind-studio.example",
        contact="Hannah Reid",
        telephone="0161 496 0123",
        vat_number="GB 123 4567 89",
    )
    account = Account(
        DEMO.username,
        DEMO.password,
        company,
        next_number=1001,
        next_dbid=7_340_001,
        next_line_id=90_001,
    )
    _add_customers(account, DEMO_CUSTOMERS, first_id=412_001, today=today, rng=rng)
    drafts = [
        *_acme_drafts(rng, today),
        *_regular_drafts(rng, today, "BRIGHT01", count=6, exempt=True),
        *_corvid_drafts(rng, today),
        *_dune_drafts(rng, today),
        *_foxglove_drafts(rng, today),
        *_granite_drafts(rng, today),
        *_regular_drafts(rng, today, "HOLL01", count=5, all_paid=True),
        *_regular_drafts(rng, today, "IVY01", count=8),
    ]
    _post(account, drafts, rng)
    return account


def _second_account(rng: random.Random, today: date) -> Account:
    company = Company(
        name="Harbour & Hill LLP",
        address=("The Sail Loft", "Harbour Road", "Falmouth", ""),
        postcode="TR11 2AB",
        email="office@harbourhill.example",
        contact="Ewan Hill",
        telephone="01326 960 000",
        vat_number="GB 987 6543 21",
    )
    account = Account(
        SECOND.username,
        SECOND.password,
        company,
        next_number=501,
        next_dbid=9_100_001,
        next_line_id=500_001,
    )
    _add_customers(account, SECOND_CUSTOMERS, first_id=655_101, today=today, rng=rng)
    drafts = [
        d
        for spec in SECOND_CUSTOMERS
        for d in _regular_drafts(rng, today, spec.code, count=rng.randint(2, 3))
    ]
    _post(account, drafts, rng)
    return account


def _quiet_company() -> Company:
    return Company(
        "Quiet Fields Farm",
        ("Quiet Fields", "Hexham", "", ""),
        "NE46 1AA",
        "farm@quietfields.example",
        "Ann Field",
        "01434 960 111",
        "",
    )


def _locked_company() -> Company:
    return Company(
        "Lockwood Joinery",
        ("5 Saw Mill Yard", "Kendal", "", ""),
        "LA9 4AA",
        "info@lockwood.example",
        "Ed Lockwood",
        "01539 960 222",
        "GB 555 0000 11",
    )


def _add_customers(
    account: Account,
    specs: tuple[CustomerSpec, ...],
    *,
    first_id: int,
    today: date,
    rng: random.Random,
) -> None:
    for offset, spec in enumerate(specs):
        created = datetime.combine(today - timedelta(days=1500 - 40 * offset), datetime.min.time())
        customer = CustomerRecord(
            id=first_id + offset * 7,
            code=spec.code,
            name=spec.name,
            contact_first=spec.first,
            contact_last=spec.last,
            email=spec.email,
            telephone=_telephone(rng),
            address=spec.address,
            postcode=spec.postcode,
            created=created.replace(hour=9, minute=rng.randint(0, 59)),
            country_name=spec.country[0],
            country_code=spec.country[1],
            payment_terms=spec.payment_terms,
            currency_id=spec.currency_id,
            vat_number="DE811907980" if spec.country[1] == "DE" else "",
            website=f"https://www.{spec.email.split('@')[1].split(';')[0]}",
        )
        account.customers[customer.id] = customer


def _telephone(rng: random.Random) -> str:
    return f"0{rng.randint(1100, 1999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"


def _lines(rng: random.Random, count: int) -> list[NewLine]:
    lines = []
    for service in rng.sample(CATALOGUE, count):
        quantity = Decimal(rng.choice(["1", "1", "2", "3", "0.5", "4"]))
        lines.append(_line(service, quantity))
    return lines


def _line(service: Service, quantity: Decimal) -> NewLine:
    return NewLine(
        service.description,
        quantity,
        service.rate,
        service.vat_rate,
        service.product_id,
        service.product_name,
    )


def _acme_drafts(rng: random.Random, today: date) -> list[Draft]:
    drafts = []
    for k in range(1, 221):
        issued = today - timedelta(days=5 * k + 2)
        if k <= 4:
            share = Decimal(0)  # recent: due in the future
        elif k in (8, 11):
            share = Decimal(0)  # overdue
        elif k == 9:
            share = Decimal("0.4")  # part-paid and overdue
        else:
            share = Decimal(1)
        drafts.append(
            Draft(
                "ACME01",
                issued,
                tuple(_lines(rng, rng.randint(1, 4))),
                share,
                reference=f"PO-{44_000 + k * 3}",
            )
        )
    return drafts


def _regular_drafts(
    rng: random.Random,
    today: date,
    code: str,
    *,
    count: int,
    exempt: bool = False,
    all_paid: bool = False,
) -> list[Draft]:
    drafts = []
    for k in range(count):
        issued = today - timedelta(days=9 + 23 * k + rng.randint(0, 6))
        lines = _lines(rng, rng.randint(2, 4))
        if exempt and k % 2 == 0:
            lines.append(_line(EXEMPT_LINE, Decimal(1)))
        if k % 3 == 1:
            lines.append(_line(TRAVEL_LINE, Decimal(2)))
        share = Decimal(1) if all_paid or k >= 2 else Decimal(0)
        if not all_paid and k == 1:
            share = Decimal("0.5")
        drafts.append(Draft(code, issued, tuple(lines), share))
    return drafts


def _corvid_drafts(rng: random.Random, today: date) -> list[Draft]:
    rates = ("1.1650", "1.1712", "1.1588", "1.1803")
    return [
        Draft(
            "CORV01",
            today - timedelta(days=12 + 31 * k),
            tuple(_lines(rng, 2)),
            Decimal(0) if k == 0 else Decimal(1),
            reference=f"BE-{2200 + k}",
            currency="EUR",
            exchange_rate=Decimal(rates[k]),
        )
        for k in range(4)
    ]


def _dune_drafts(rng: random.Random, today: date) -> list[Draft]:
    returned = NewLine("Credit: reprint of damaged brochures", Decimal("-3"), Decimal("45.00"))
    return [
        Draft("DUNE01", today - timedelta(days=70), tuple(_lines(rng, 3)), Decimal(1)),
        Draft(
            "DUNE01",
            today - timedelta(days=44),
            tuple(_lines(rng, 2)),
            Decimal(0),
            reference="Spring mailer",
        ),
        Draft(
            "DUNE01",
            today - timedelta(days=20),
            (returned,),
            Decimal(0),
            reference="Credit for invoice of the spring mailer",
        ),
    ]


def _foxglove_drafts(rng: random.Random, today: date) -> list[Draft]:
    rooms = ("Hallway", "Kitchen", "Snug", "Dining room", "Landing", "Main bedroom")
    schedule = []
    for n in range(48):
        service = CATALOGUE[n % len(CATALOGUE)]
        text = f"{rooms[n % len(rooms)]}: {service.description.lower()} (item {n + 1})"
        schedule.append(NewLine(text, Decimal(rng.choice(["1", "2", "0.5"])), service.rate))
    return [
        Draft(
            "FOX01",
            today - timedelta(days=16),
            tuple(schedule),
            Decimal(0),
            reference="Whole-house refresh, schedule B",
        ),
        Draft("FOX01", today - timedelta(days=60), tuple(_lines(rng, 2)), Decimal(1)),
    ]


def _granite_drafts(rng: random.Random, today: date) -> list[Draft]:
    drafts = [
        Draft(
            "GRAN01",
            today - timedelta(days=50 + 30 * k),
            tuple(_lines(rng, 2)),
            Decimal(0) if k == 0 else Decimal(1),
            reference=f"Site {k + 7}",
            cis=True,
        )
        for k in range(3)
    ]
    # A no-charge invoice: nothing is owed, yet KashFlow never sets Paid on a zero total, so
    # "paid" and "outstanding" disagree here (the unpaid scope must go by what is owed).
    # The newest draft of all and, like every CIS draft, it takes no random draw: no other
    # invoice's number or contents move.
    snagging = NewLine("Snagging visit, site 7 (no charge)", Decimal(1), Decimal("0.00"))
    drafts.append(
        Draft("GRAN01", today - timedelta(days=1), (snagging,), Decimal(0), "Site 7", cis=True)
    )
    return drafts


def _post(account: Account, drafts: list[Draft], rng: random.Random) -> None:
    """Number the drafts in date order and enter them into the account."""
    for draft in sorted(drafts, key=lambda d: (d.issued, d.code)):
        customer = account.customer_by_code(draft.code)
        assert customer is not None, draft.code
        record = account.add_invoice(
            customer,
            draft.lines,
            issued=draft.issued,
            reference=draft.reference,
            currency=draft.currency,
            exchange_rate=draft.exchange_rate,
            # Newer live fields ride on a share of replies, as they do on real accounts.
            live_fields=draft.cis or rng.random() < 0.3,
            cis_reverse_charge=draft.cis,
        )
        if draft.paid_share:
            amount = money(record.total * draft.paid_share)
            account.mark_paid(record.number, None if draft.paid_share == 1 else amount)
