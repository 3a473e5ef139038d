"""What the sender just wrote: history, signatures and footers away, in every client's style."""

from __future__ import annotations

import pytest

from bot.quoting import strip_quotes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes please\n\n> old text\n> more\n\nThanks", "Yes please\n\nThanks"),
        (
            "Bitte alle Rechnungen.\n\nAm 03.03.2025 um 09:12 schrieb Northwind"
            " <a@b.example>:\n> Hallo",
            "Bitte alle Rechnungen.",
        ),
        (
            "Please resend.\n\n-----Original Message-----\nFrom: Northwind\nSent: Monday\n\nold",
            "Please resend.",
        ),
        (
            "Please resend.\n\n________________________________\nFrom: Northwind\nSent: Monday",
            "Please resend.",
        ),
        (
            "On 3 Mar 2025, at 09:12, Northwind <a@b.example> wrote:\n\n> Dear Sam\n\n"
            "Thanks, can I have invoice 9 too?",
            "Thanks, can I have invoice 9 too?",
        ),
        (
            "Northwind Traders <a@b.example> wrote:\n> quoted\nbelow the quote",
            "below the quote",
        ),
        ("All of them\n\nSent from Outlook for Android\nFrom: x\n", "All of them"),
        ("Send all\n\nGet Outlook for iOS", "Send all"),
        ("unpaid please\n-- \nJo Bloggs\n07700 900123", "unpaid please"),
        ("On Monday I will pay invoice 12.", "On Monday I will pay invoice 12."),
    ],
    ids=[
        "quote-lines",
        "german-attribution",
        "original-message",
        "outlook-web-rule",
        "bottom-posted",
        "bare-attribution",
        "mobile-footer",
        "get-outlook",
        "signature",
        "not-an-attribution",
    ],
)
def test_quoted_history_and_signatures_are_removed(raw: str, expected: str) -> None:
    assert strip_quotes(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Please send invoice 1231 only.\n\nThanks\nJo\n\nJo Bloggs | Accounts Payable"
            "\nT: 01632 960123",
            "Please send invoice 1231 only.\n\nThanks\nJo",
        ),
        (
            "Please send invoice 1231 only.\n\nThis email and any attachments are confidential"
            " and intended solely for the addressee. If you have received it in error, please"
            " notify the sender and delete all copies.",
            "Please send invoice 1231 only.",
        ),
        (
            "Bitte Rechnung 1231.\n\nDiese E-Mail enthält vertrauliche Informationen. Wenn Sie"
            " nicht der richtige Empfänger sind, löschen Sie bitte alle Kopien.",
            "Bitte Rechnung 1231.",
        ),
        (
            "Anfoneb 1231 os gwelwch yn dda.\n\nRydym yn croesawu gohebiaeth yn Gymraeg."
            " We welcome correspondence in Welsh.",
            "Anfoneb 1231 os gwelwch yn dda.",
        ),
        (
            "Thanks!\nCould you send just the unpaid ones?\n\nSam",
            "Thanks!\nCould you send just the unpaid ones?\n\nSam",
        ),
        (
            "Hi,\n\nall unpaid please\n\nMit freundlichen Grüßen\nAnna Weber\nBuchhaltung\n"
            "Tel. +49 30 1234567",
            "Hi,\n\nall unpaid please\n\nMit freundlichen Grüßen\nAnna Weber",
        ),
        (
            "Merci de renvoyer la facture.\n\nDe : Northwind <a@b.example>\nEnvoyé : lundi"
            " 3 mars 2025 09:12\nÀ : Anne\nObjet : Facture 1234",
            "Merci de renvoyer la facture.",
        ),
        (
            "Graag alle facturen.\n\nVan: Northwind <a@b.example>\nVerzonden: maandag 3 maart"
            "\nAan: Jan\nOnderwerp: Factuur 1234",
            "Graag alle facturen.",
        ),
        (
            "Anfonwch bob anfoneb.\n\nOddi wrth: Northwind <a@b.example>\nAnfonwyd: 3 Mawrth"
            "\nAt: Aled\nPwnc: Anfoneb 1234",
            "Anfonwch bob anfoneb.",
        ),
        (
            "Por favor, la factura.\n\nDe: Northwind <a@b.example>\nEnviado el: lunes, 3 de"
            " marzo\nPara: Ana\nAsunto: Factura 1234",
            "Por favor, la factura.",
        ),
        (
            "Diolch!\n\nAr Llun, 3 Maw 2025 am 09:12 ysgrifennodd Northwind <a@b.example>:\n"
            "> Annwyl Aled",
            "Diolch!",
        ),
        (
            "Can you resend this?\n\n---------- Forwarded message ---------\nFrom: Northwind"
            "\nDate: Mon\nSubject: Invoice 1234\n\nPlease find attached all invoices",
            "Can you resend this?",
        ),
        (
            "Kunt u deze opnieuw sturen?\n\nOp 3 mrt. 2025 om 09:12 heeft Northwind"
            " <a@b.example> het volgende geschreven:\n\n> Beste Jan",
            "Kunt u deze opnieuw sturen?",
        ),
    ],
    ids=[
        "signature-under-sign-off",
        "legal-footer",
        "german-legal-footer",
        "welsh-bilingual-footer",
        "thanks-then-a-request",
        "german-sign-off",
        "outlook-french-header",
        "outlook-dutch-header",
        "outlook-welsh-header",
        "outlook-spanish-header",
        "gmail-welsh-attribution",
        "gmail-forward",
        "apple-dutch-attribution",
    ],
)
def test_signatures_footers_and_history_in_every_language(raw: str, expected: str) -> None:
    assert strip_quotes(raw) == expected
