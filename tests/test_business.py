"""What a business tells its clients, kept per account on SQLite and PostgreSQL: payment
instructions checked as a bank would, a logo re-encoded by us, a language per client."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from permalink.business import BusinessProfiles, clean_logo, iban_valid
from tests.conftest import OpenDb

pytestmark = pytest.mark.usefixtures("database_kind")


def png(width: int = 900, height: int = 300, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (29, 79, 145)).save(out, format=kind)
    return out.getvalue()


async def test_payment_instructions_are_saved_cleaned_and_per_account(open_db: OpenDb) -> None:
    profiles = BusinessProfiles(open_db())
    saved = await profiles.update(
        "Demo",
        bank_name="  Barclays   Bank UK PLC ",
        account_name="Northwind Studio Ltd",
        sort_code="200000",
        account_number="5577 9911",
        iban="gb29 nwbk 6016 1331 9268 19",
        bic="nwbkgb2l",
        reference="customer-invoice",
        pay_url="https://pay.northwind.example/",
        default_language="de-AT",
        statement_cover=False,
    )
    pay = saved.payment
    assert (pay.bank_name, pay.sort_code, pay.account_number) == (
        "Barclays Bank UK PLC",
        "20-00-00",
        "55779911",
    )
    assert (pay.iban, pay.iban_grouped, pay.bic) == (
        "GB29NWBK60161331926819",
        "GB29 NWBK 6016 1331 9268 19",
        "NWBKGB2L",
    )
    assert (saved.default_language, saved.statement_cover) == ("de", False)
    reopened = BusinessProfiles(open_db())
    assert await reopened.get("demo") == saved
    assert (await reopened.get("second")).payment.given is False
    assert pay.reference_for("ACME01", [1251]).text == "ACME01-1251"
    assert pay.reference_for("ACME01", [1251, 1248]).per_invoice


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"iban": "GB28NWBK60161331926819"}, "check digits"),
        ({"sort_code": "12-34"}, "six digits"),
        ({"sort_code": "20-00-00"}, "both the sort code and the account number"),
        ({"bic": "NWBKGB2L"}, "goes with an IBAN"),
        ({"bic": "NW-BK"}, "8 or 11"),
        ({"pay_url": "http://pay.example/"}, "https://"),
        ({"pay_url": "javascript:alert(1)"}, "https://"),
        ({"default_language": "klingon"}, "languages offered"),
        ({"reference": "whatever"}, "reference"),
        ({"bank_name": "x" * 101}, "at most 100"),
    ],
)
async def test_wrong_details_get_a_sentence_and_nothing_is_saved(
    open_db: OpenDb, changes: dict[str, object], words: str
) -> None:
    profiles = BusinessProfiles(open_db())
    with pytest.raises(ValueError, match=words):
        await profiles.update("demo", **changes)
    assert (await profiles.get("demo")).payment.given is False


def test_iban_check_digits() -> None:
    assert iban_valid("GB29NWBK60161331926819")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("GB29")


async def test_a_logo_is_shrunk_re_encoded_and_served_back(open_db: OpenDb) -> None:
    profiles = BusinessProfiles(open_db())
    cleaned = clean_logo(png(kind="JPEG"))
    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.format == "PNG" and image.size == (600, 200)
    saved = await profiles.set_logo("demo", cleaned)
    assert saved.has_logo
    assert await profiles.logo("demo") == cleaned
    newer = await profiles.set_logo("demo", clean_logo(png(300, 100)))
    assert newer.logo_version > saved.logo_version  # a new URL, so browsers fetch it
    assert not (await profiles.set_logo("demo", None)).has_logo
    assert await profiles.logo("demo") is None


@pytest.mark.parametrize(
    "data",
    [b"", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", b"GIF8" * 10],
    ids=["empty", "svg", "broken"],
)
def test_anything_but_a_real_image_is_refused_as_a_logo(data: bytes) -> None:
    with pytest.raises(ValueError, match="logo"):
        clean_logo(data)


def test_a_logo_file_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 512 KB"):
        clean_logo(b"\x89PNG" + bytes(600 * 1024))


async def test_each_client_can_have_their_own_language(open_db: OpenDb) -> None:
    profiles = BusinessProfiles(open_db())
    await profiles.set_customer_language("demo", "corv01", "de")
    assert await profiles.customer_language("DEMO", "CORV01") == "de"
    assert await profiles.customer_language("second", "CORV01") is None
    await profiles.set_customer_language("demo", "CORV01", None)
    assert await profiles.customer_language("demo", "CORV01") is None
    with pytest.raises(ValueError):
        await profiles.set_customer_language("demo", "CORV01", "tlh")
