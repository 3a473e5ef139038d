"""What a customer's words ask for, in any of the six languages, and in which language."""

from __future__ import annotations

import pytest

from bot.intent import Intent, asks_anything, invoice_numbers, read_intent
from permalink.scopes import MAX_SCOPE_INVOICES, Scope

ALL, UNPAID = Scope("all"), Scope("unpaid")


def scope_of(text: str, subject: str = "", default: str = "unpaid") -> str:
    intent = read_intent(text, subject, "all" if default == "all" else "unpaid")
    return str(intent.scope) if intent.understood else f"default {intent.scope}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please send all my invoices", "all"),
        ("Can I have every invoice?", "all"),
        ("Send everything you have", "all"),
        ("Yes please, all of them", "all"),
        ("Which invoices are unpaid?", "unpaid"),
        ("Please send anything outstanding", "unpaid"),
        ("Anything overdue?", "unpaid"),
        ("What do we owe you?", "unpaid"),
        ("What's due this month?", "unpaid"),
        ("Send all the ones we still owe", "unpaid"),
        ("Could you send the invoices we haven't paid yet?", "unpaid"),
        ("What's still open on our account?", "unpaid"),
        ("Just the ones we've not paid, please", "unpaid"),
        ("Not all of them, only the unpaid ones", "unpaid"),
        ("invoice 1234", "invoice:1234"),
        ("Could I get Invoice #1234 again", "invoice:1234"),
        ("inv 1234 please", "invoice:1234"),
        ("inv. 1234 please", "invoice:1234"),
        ("Invoice no. 1234", "invoice:1234"),
        ("invoice number: 1234", "invoice:1234"),
        ("INV-1234", "invoice:1234"),
        ("INV 1234 please", "invoice:1234"),
        ("Please resend #1234", "invoice:1234"),
        ("Invoice 1234 is overdue, can you resend it?", "invoice:1234"),
        ("Send invoice 1234 and all the others", "all"),
        ("Invoice 1234 and invoice 1234 again", "invoice:1234"),
        ("Please send invoices 1234, 1235 and 1236", "invoice:1234,1235,1236"),
        ("Could you send 1234 and 1250?", "invoice:1234,1250"),
        ("invoices 1241 to 1248", "invoice:" + ",".join(str(n) for n in range(1241, 1249))),
        ("invoices 1241-1243 and 1250", "invoice:1241,1242,1243,1250"),
        ("INV-1234 and INV-1250", "invoice:1234,1250"),
        ("Could you send invoice 1234 and 2 others", "invoice:1234"),
        ("Could you send a statement of account?", "unpaid"),
    ],
)
def test_english_requests(text: str, expected: str) -> None:
    assert scope_of(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "language"),
    [
        ("Bitte senden Sie uns alle offenen Rechnungen", "unpaid", "de"),
        ("Könnten Sie mir alle Rechnungen schicken?", "all", "de"),
        ("Bitte Rechnung Nr. 1234 erneut senden", "invoice:1234", "de"),
        ("Rechnungen 1241 bis 1243 bitte", "invoice:1241,1242,1243", "de"),
        ("Pourriez-vous nous renvoyer nos factures impayées ?", "unpaid", "fr"),
        ("Merci de m'envoyer toutes nos factures", "all", "fr"),
        ("Pouvez-vous me renvoyer la facture n° 1234 ?", "invoice:1234", "fr"),
        ("les factures 1241 à 1243 s'il vous plaît", "invoice:1241,1242,1243", "fr"),
        ("¿Me pueden enviar las facturas pendientes?", "unpaid", "es"),
        ("Por favor, envíenme todas las facturas", "all", "es"),
        ("las facturas de la 1241 a la 1243, por favor", "invoice:1241,1242,1243", "es"),
        ("Kunt u mij de openstaande facturen sturen?", "unpaid", "nl"),
        ("Graag alle facturen", "all", "nl"),
        ("factuur 1216", "invoice:1216", "nl"),
        ("facturen 1241 t/m 1243 graag", "invoice:1241,1242,1243", "nl"),
        ("A allech chi anfon yr anfonebau sydd heb eu talu?", "unpaid", "cy"),
        ("Anfonwch ein holl anfonebau os gwelwch yn dda", "all", "cy"),
        ("A allech chi anfon anfoneb 1234 eto?", "invoice:1234", "cy"),
        ("anfonebau 1241 a 1243 os gwelwch yn dda", "invoice:1241,1243", "cy"),
    ],
)
def test_requests_in_other_languages(text: str, expected: str, language: str) -> None:
    intent = read_intent(text, "", "unpaid")
    assert (str(intent.scope), intent.understood, intent.language) == (expected, True, language)


@pytest.mark.parametrize(
    "text",
    [
        "Could you send me my invoices please?",
        "Please send our invoices",
        "Pourriez-vous m'envoyer mes factures ?",
        "Bitte schicken Sie mir meine Rechnungen",
        "¿Podrían enviarme mis facturas?",
        "Kunt u mij mijn facturen sturen?",
        "A allech chi anfon fy anfonebau?",
    ],
)
def test_my_invoices_is_understood_as_the_default(text: str) -> None:
    assert read_intent(text, "", "unpaid") == Intent(
        UNPAID, language=read_intent(text, "", "all").language
    )
    assert read_intent(text, "", "all").scope == ALL
    assert read_intent(text, "", "all").understood


def test_a_statement_is_the_unpaid_scope_marked_as_a_statement() -> None:
    for text in (
        "Can we have a statement please?",
        "Bitte einen Kontoauszug",
        "Un relevé de compte svp",
    ):
        intent = read_intent(text, "", "all")
        assert (intent.scope, intent.statement, intent.understood) == (UNPAID, True, True)
    assert not read_intent("The payment is on our bank statement", "", "all").statement


@pytest.mark.parametrize(
    "text",
    [
        "All the best,\nJane",
        "Hi all, thanks",
        "That's all, thank you",
        "That\u2019s all, thank you",
        "Delayed due to the weather",
        "Our investment 2024 plan",
        "Bonjour à tous",
        "Pob hwyl",
        "Alles Gute",
        "Hola a todos",
        "Hallo allemaal",
        "Hello",
        "",
    ],
)
def test_everyday_phrases_are_not_requests(text: str) -> None:
    assert read_intent(text, "", "all").understood is False
    assert read_intent(text, "", "all").scope == ALL
    assert read_intent(text, "", "unpaid").scope == UNPAID


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("invoice 1234 for £480.00, due 2 April 2025", [1234]),
        ("the invoice from 12 March", []),
        ("Our PO 4471 is attached, could you send the invoice?", []),
        ("Call me on 01632 960000 if you need anything", []),
        ("invoice 0001234", [1234]),
        ("invoices 1241-48", list(range(1241, 1249))),
        ("invoices between 1241 and 1243", [1241, 1242, 1243]),
        ("Rechnung 2025-03 bitte", [2025]),
    ],
)
def test_only_invoice_numbers_are_taken_for_invoice_numbers(text: str, numbers: list[int]) -> None:
    assert invoice_numbers(text) == numbers


def test_a_range_too_long_for_one_link_asks_for_all() -> None:
    assert len(invoice_numbers("invoices 100 to 999")) > MAX_SCOPE_INVOICES
    assert read_intent("invoices 100 to 999", "", "unpaid").scope == ALL


def test_reply_to_an_invoice_email_asks_for_that_invoice() -> None:
    subject = "Re: Invoice 1234 from Northwind Traders Ltd"
    intent = read_intent("Could you resend this please?", subject, "all")
    assert intent.scope == Scope("invoice", 1234)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Actually, could you send everything?", ALL),
        ("What else do we owe?", UNPAID),
        ("I need invoice 1300 instead", Scope("invoice", 1300)),
    ],
)
def test_the_new_text_outranks_the_subject(text: str, expected: Scope) -> None:
    subject = "Re: Invoice 1234 from Northwind Traders Ltd"
    assert read_intent(text, subject, "unpaid").scope == expected


def test_subject_alone_can_carry_the_request() -> None:
    assert read_intent("", "Unpaid invoices", "all").scope == UNPAID


def test_default_is_used_and_marked_not_understood() -> None:
    assert read_intent("Hello, send my stuff", "Hi", "unpaid") == Intent(
        UNPAID, understood=False, language="en"
    )


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("Thanks! Could you send just the unpaid ones?", True),
        ("Could you resend this please?", True),
        ("Diolch! Allech chi anfon anfoneb 1250 hefyd?", True),
        ("Got it, thank you!", False),
        ("Merci beaucoup !", False),
        ("Vielen Dank, alles erhalten.", False),
        ("", False),
    ],
)
def test_whether_a_reply_asks_for_anything(text: str, asks: bool) -> None:
    assert asks_anything(text) is asks
