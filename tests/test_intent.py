"""What a customer's words ask for: all invoices, the unpaid ones, or one invoice."""

from __future__ import annotations

import pytest

from bot.intent import Intent, read_intent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please send all my invoices", Intent("all")),
        ("Can I have every invoice?", Intent("all")),
        ("Send everything you have", Intent("all")),
        ("Which invoices are unpaid?", Intent("unpaid")),
        ("Please send anything outstanding", Intent("unpaid")),
        ("Anything overdue?", Intent("unpaid")),
        ("What do we owe you?", Intent("unpaid")),
        ("What's due this month?", Intent("unpaid")),
        ("Send all the ones we still owe", Intent("unpaid")),
        ("invoice 1234", Intent("invoice", 1234)),
        ("Could I get Invoice #1234 again", Intent("invoice", 1234)),
        ("inv 1234 please", Intent("invoice", 1234)),
        ("inv. 1234 please", Intent("invoice", 1234)),
        ("Invoice no. 1234", Intent("invoice", 1234)),
        ("invoice number: 1234", Intent("invoice", 1234)),
        ("INV-1234", Intent("invoice", 1234)),
        ("Invoice 1234 is overdue, can you resend it?", Intent("invoice", 1234)),
        ("Send invoice 1234 and all the others", Intent("all")),
        ("Please send invoices 1234, 1235 and 1236", Intent("all")),
        ("Invoice 1234 and invoice 1234 again", Intent("invoice", 1234)),
    ],
)
def test_words_in_the_new_text(text: str, expected: Intent) -> None:
    assert read_intent(text, "", "unpaid") == expected


@pytest.mark.parametrize(
    "text",
    [
        "All the best,\nJane",
        "Hi all, thanks",
        "That's all, thank you",
        "That\u2019s all, thank you",
        "Delayed due to the weather",
        "Our investment 2024 plan",
        "Hello",
        "",
    ],
)
def test_everyday_phrases_are_not_requests(text: str) -> None:
    assert read_intent(text, "", "all") == Intent("all", understood=False)
    assert read_intent(text, "", "unpaid") == Intent("unpaid", understood=False)


def test_reply_to_an_invoice_email_asks_for_that_invoice() -> None:
    subject = "Re: Invoice 1234 from Northwind Traders Ltd"
    assert read_intent("Could you resend this please?", subject, "all") == Intent("invoice", 1234)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Actually, could you send everything?", Intent("all")),
        ("What else do we owe?", Intent("unpaid")),
        ("I need invoice 1300 instead", Intent("invoice", 1300)),
    ],
)
def test_the_new_text_outranks_the_subject(text: str, expected: Intent) -> None:
    subject = "Re: Invoice 1234 from Northwind Traders Ltd"
    assert read_intent(text, subject, "unpaid") == expected


def test_subject_alone_can_carry_the_request() -> None:
    assert read_intent("", "Unpaid invoices", "all") == Intent("unpaid")


def test_default_is_used_and_marked_not_understood() -> None:
    assert read_intent("Hello, send my stuff", "Hi", "unpaid") == Intent("unpaid", None, False)
