"""Reading real-looking request mail: who sent it and what they just wrote, in any client."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.intent import read_intent
from bot.mailparse import html_to_text, parse
from bot.quoting import strip_quotes

MAIL = Path(__file__).parent / "data" / "mail"


def load(name: str) -> bytes:
    return (MAIL / name).read_bytes()


# file -> (from address, the new text the sender wrote, (intent kind, invoice))
EXPECTED: dict[str, tuple[str, str, tuple[str, int | None]]] = {
    "outlook-quoted-reply.eml": (
        "Jane.Holloway@hollyhock-bakery.example",
        "Hi,\n\nCould you send me all our unpaid invoices please? Our auditors need them by"
        " Friday.\n\nThanks,\nJane",
        ("unpaid", None),
    ),
    "gmail-reply.eml": (
        "sam@okafor-cycles.example",
        "Hi, could you resend this one please? I can't find the PDF anywhere.\n\nThanks\nSam",
        ("invoice", 1234),
    ),
    "apple-mail-reply.eml": (
        "ana@ribeiro-design.example",
        "Hello,\n\nCan I have every invoice you\u2019ve sent us this year? Our accountant is"
        " asking.\n\nThank you,\nAna",
        ("all", None),
    ),
    "thunderbird-reply.eml": (
        "tom@bakerandsons.example",
        "Hello,\n\nplease send invoice #1250 again, the copy we have is missing its second"
        " page.\n\nRegards,\nTom",
        ("invoice", 1250),
    ),
    "iphone-reply.eml": ("dev@patel-grocers.example", "Yes please, all of them", ("all", None)),
    "outlook-french-reply.eml": (
        "rene@dubois-vins.example",
        "Bonjour,\n\nPourriez-vous me renvoyer cette facture, s'il vous pla\u00eet ?"
        "\n\nCordialement,\nRen\u00e9",
        ("invoice", 1234),
    ),
    "html-only.eml": (
        "priya@meadowlark-studio.example",
        "Good morning,\n\nCould you send me invoice no. 1312? It\u2019s the one for the March"
        " delivery & install, and I'd like the PDF for our records.\n\nPriya Shah\n"
        "Finance, Meadowlark Studio",
        ("invoice", 1312),
    ),
    "base64-body.eml": (
        "zoe@cafe-zoe.example",
        "Hello,\n\nCould you send everything you have for Caf\u00e9 Zo\u00eb Ltd? Our new"
        " bookkeeper starts on Monday.\n\nCheers,\nZo\u00eb",
        ("all", None),
    ),
    "windows-1252.eml": (
        "rene@dubois-vins.example",
        "Hi there \u2013 what do we still owe you? I think it\u2019s around \u00a31,250 plus"
        " the \u20ac300 deposit.\n\nRegards,\nRen\u00e9",
        ("unpaid", None),
    ),
    "latin1-labelled-cp1252.eml": (
        "rene@dubois-vins.example",
        "Hi there \u2013 what do we still owe you? I think it\u2019s around \u00a31,250 plus"
        " the \u20ac300 deposit.\n\nRegards,\nRen\u00e9",
        ("unpaid", None),
    ),
    "iso-2022-jp.eml": (
        "hanako.yamada@yamada-shoten.example",
        "ノースウィンド・トレーダーズ\nご担当者様\n\nいつもお世話になっております。\n"
        "請求書（invoice 1401）のPDFを再送していただけますでしょうか。\n\n"
        "よろしくお願いいたします。\n山田 花子",
        ("invoice", 1401),
    ),
    "invoice-number-request.eml": (
        "olu@adeyemi-plumbing.example",
        "Hi,\n\nPlease can I have a copy of invoice number 1290? I think I deleted it by\n"
        "mistake.\n\nMany thanks,\nOlu",
        ("invoice", 1290),
    ),
    "unpaid-request.eml": (
        "accounts@iyer-kitchens.example",
        "Hello,\n\nWhat do we still owe you? Please send whatever is outstanding so I can pay"
        " it this week.\n\nMeera",
        ("unpaid", None),
    ),
    "subject-only.eml": ("olu@adeyemi-plumbing.example", "", ("unpaid", None)),
    "spoofed-reply-to.eml": (
        "jane.holloway@hollyhock-bakery.example",
        "Hello,\n\nPlease send all our invoices. I have a new address, so reply to that one."
        "\n\nJane",
        ("all", None),
    ),
    "bot-reply-loop.eml": ("sam@okafor-cycles.example", "Got it, thank you!", ("invoice", 1234)),
    "reply-to-bot-reply.eml": (
        "sam@okafor-cycles.example",
        "Thanks! Could you send just the unpaid ones?\n\nSam",
        ("unpaid", None),
    ),
    "malformed-headers.eml": ("", "Hello, please send invoice 77. Thanks, Jane", ("invoice", 77)),
}


def test_every_sample_has_an_expectation_or_is_automatic() -> None:
    automatic = {
        "auto-reply.eml",
        "x-autorespond.eml",
        "bounce-dsn.eml",
        "mailing-list.eml",
        "noreply-sender.eml",
    }
    assert {p.name for p in MAIL.glob("*.eml")} == set(EXPECTED) | automatic


@pytest.mark.parametrize("name", sorted(p.name for p in MAIL.glob("*.eml")))
@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_every_sample_parses(name: str, line_ending: bytes) -> None:
    raw = load(name).replace(b"\n", line_ending)
    request = parse(raw)
    if name in EXPECTED:
        sender, text, (kind, number) = EXPECTED[name]
        assert request.from_address == sender
        assert request.new_text == text
        intent = read_intent(request.new_text, request.subject, "unpaid")
        assert (intent.kind, intent.invoice) == (kind, number)


def html_part(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=policy.default)
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return str(part.get_content())
    raise AssertionError("no HTML part")


@pytest.mark.parametrize(
    "name",
    [
        "outlook-quoted-reply.eml",
        "gmail-reply.eml",
        "apple-mail-reply.eml",
        "thunderbird-reply.eml",
    ],
)
def test_html_alternative_says_the_same_as_the_text(name: str) -> None:
    # A client may send only its HTML part; the quote must go the same way there.
    from_html = strip_quotes(html_to_text(html_part(load(name))))
    assert from_html.split() == EXPECTED[name][1].split()


def test_headers_of_a_reply_are_read() -> None:
    request = parse(load("outlook-quoted-reply.eml"), envelope_sender="<bounce@x.example>")
    assert request.message_id == (
        "<DB9PR03MB72252F1C0D5A1E2B3F4A5B6C7D8E9F0AA@DB9PR03MB7225.eurprd03.prod.outlook.com>"
    )
    assert request.in_reply_to == "<20250303091200.4F2A1C0E5@kashflow-mailer.example>"
    assert request.references == ("<20250303091200.4F2A1C0E5@kashflow-mailer.example>",)
    assert request.subject == "RE: Invoice 1234 from Northwind Traders Ltd"
    assert request.from_display == "Jane Holloway"
    assert request.content_type == "multipart/alternative"
    assert request.envelope_sender == "bounce@x.example"
    assert len(request.authentication_results) == 1
    assert request.authentication_results[0].startswith("mx.northwind.example;")
    assert request.defects == ()


def test_sender_domain_is_lower_cased_and_lookup_is_lower_case_whole() -> None:
    request = parse(load("outlook-quoted-reply.eml"))
    assert request.from_address == "Jane.Holloway@hollyhock-bakery.example"
    assert request.lookup_address == "jane.holloway@hollyhock-bakery.example"


def test_reply_to_is_read_but_kept_apart_from_the_sender() -> None:
    request = parse(load("spoofed-reply-to.eml"))
    assert request.reply_to == "jane.h0lloway@mallory.example"
    assert request.from_address == "jane.holloway@hollyhock-bakery.example"


def test_list_and_automatic_headers_are_read() -> None:
    listed = parse(load("mailing-list.eml"))
    assert listed.list_id == "Chamber members <members.lists.chamber.example>"
    assert listed.list_unsubscribe == "<mailto:members-leave@lists.chamber.example>"
    assert listed.precedence == "list"
    assert parse(load("auto-reply.eml")).auto_submitted == "auto-replied"
    assert parse(load("x-autorespond.eml")).x_autorespond == "invoices@northwind.example"
    assert parse(load("bounce-dsn.eml")).content_type == "multipart/report"


def test_encoded_display_names_and_subjects_are_decoded() -> None:
    request = parse(load("iso-2022-jp.eml"))
    assert request.from_display == "山田 花子"
    assert request.subject == "請求書の再送のお願い"


@pytest.mark.parametrize("envelope", ["", "<>", " <> "])
def test_null_reverse_path_is_kept_as_empty(envelope: str) -> None:
    assert parse(load("bounce-dsn.eml"), envelope_sender=envelope).envelope_sender == ""


def test_unknown_envelope_is_none() -> None:
    assert parse(load("bounce-dsn.eml")).envelope_sender is None


def test_malformed_message_yields_what_could_be_read_and_says_why() -> None:
    request = parse(load("malformed-headers.eml"))
    assert request.from_address == ""
    assert request.subject == "Invoice 77 please"
    assert request.references == ("<unterminated@example>",)
    assert "no readable From address" in request.defects
    assert "unknown charset 'x-no-such-charset'" in request.defects
    assert "InvalidBase64PaddingDefect" in request.defects


def test_header_with_encoded_line_break_stays_on_one_line() -> None:
    raw = (
        b"From: a@b.example\nSubject: =?utf-8?q?Invoice_5=0ABcc:_evil@x.example?=\n"
        b"Content-Type: text/plain\n\nhi\n"
    )
    assert parse(raw).subject == "Invoice 5 Bcc: evil@x.example"


def test_undeclared_charset_utf8_body_is_read_as_utf8() -> None:
    raw = "From: a@b.example\nSubject: x\n\nCaf\u00e9 \u2013 \u00a3\n".encode()
    assert parse(raw).new_text == "Caf\u00e9 \u2013 \u00a3"


def test_mislabelled_bytes_are_replaced_not_fatal() -> None:
    raw = b"From: a@b.example\nContent-Type: text/plain; charset=utf-8\n\nbad \xff\xfe bytes\n"
    request = parse(raw)
    assert request.new_text == "bad \ufffd\ufffd bytes"
    assert "body not valid utf-8" in request.defects


def test_text_attachment_alone_is_still_read() -> None:
    raw = (
        b"From: a@b.example\nContent-Type: text/plain\n"
        b"Content-Disposition: attachment; filename=note.txt\n\ninvoice 42 please\n"
    )
    assert parse(raw).new_text == "invoice 42 please"


def test_huge_body_is_bounded() -> None:
    raw = b"From: a@b.example\nContent-Type: text/plain\n\n" + b"word " * 400_000
    assert len(parse(raw).new_text) <= 10_000


def test_html_to_text_keeps_words_and_drops_scripts() -> None:
    html = (
        "<html><head><style>p{}</style><title>T</title></head><body>"
        "<p>Send <b>all</b>&nbsp;invoices &amp; statements</p>"
        "<ul><li>one</li><li>two</li></ul><script>alert('x')</script>"
        "<table><tr><td>a</td><td>b</td></tr></table></body></html>"
    )
    assert html_to_text(html) == "Send all invoices & statements\n- one\n- two\na b"


def test_html_blockquote_without_cite_is_kept() -> None:
    # A plain blockquote is the sender's own formatting, not a quoted reply.
    assert html_to_text("<p>Hi</p><blockquote>invoice 5</blockquote>") == "Hi\ninvoice 5"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_parse_never_raises_on_garbage(raw: bytes) -> None:
    parse(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(p.name for p in MAIL.glob("*.eml"))),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=8),
)
def test_parse_never_raises_on_damaged_samples(name: str, at: int, junk: bytes) -> None:
    raw = load(name)
    at %= len(raw)
    parse(raw[:at] + junk + raw[at + len(junk) :])
    parse(raw[:at])


def _html_only(sender: str, html: str) -> bytes:
    return (
        f"From: Client <{sender}>\r\nTo: invoices@northwind.example\r\n"
        "Subject: Re: Your invoices from Northwind Traders Ltd\r\n"
        "Message-ID: <html-only-1@client.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n\r\n' + html
    ).encode()


YAHOO_REPLY = (
    '<html><head></head><body><div class="ydp6c1f0e4fyahoo-style-wrap">'
    '<div dir="ltr">Hi, please send invoice 1288 only. Thanks, Gwen</div></div>'
    '<div id="yahoo_quoted_0441109301" class="yahoo_quoted">'
    "<div><div>On Monday, 3 March 2025 at 09:12:00 GMT, Northwind Traders Ltd "
    "&lt;accounts@northwind.example&gt; wrote:</div><div><br></div>"
    '<div><div dir="ltr">Dear customer,<br>Please find attached all invoices for '
    "February.<br>Kind regards,<br>Northwind Traders Ltd</div></div></div></div>"
    "</body></html>"
)
PROTON_REPLY = (
    '<div style="font-family: Arial, sans-serif; font-size: 14px;">Please send invoice '
    "1288 only.</div><div><br></div>"
    '<div class="protonmail_signature_block"><div class="protonmail_signature_block-user">'
    'Tom Baker<br>Baker Joinery</div><div class="protonmail_signature_block-proton">Sent '
    'with <a href="https://proton.me/">Proton Mail</a> secure email.</div></div>'
    '<div class="protonmail_quote">On Monday, March 3rd, 2025 at 09:12, Northwind Traders '
    "Ltd &lt;accounts@northwind.example&gt; wrote:<br>"
    '<blockquote class="protonmail_quote" type="cite"><div>Dear customer,<br>Please find '
    "attached all invoices for February.<br>Kind regards,<br>Northwind Traders Ltd</div>"
    "</blockquote></div>"
)


@pytest.mark.parametrize(
    ("sender", "html", "said"),
    [
        ("gwen@yahoo.example", YAHOO_REPLY, "Hi, please send invoice 1288 only. Thanks, Gwen"),
        (
            # Yahoo set to Polish, unsigned: no attribution or sign-off rule knows where the
            # quote starts; the class alone tells.
            "gwen@yahoo.example",
            YAHOO_REPLY.replace(
                "On Monday, 3 March 2025 at 09:12:00 GMT",
                "W poniedziałek, 3 marca 2025, 09:12:00 GMT",
            )
            .replace(" &lt;accounts@northwind.example&gt;", "")
            .replace("wrote:", "napisał(a):")
            .replace(" Thanks, Gwen", ""),
            "Hi, please send invoice 1288 only.",
        ),
        ("tom@proton.example", PROTON_REPLY, "Please send invoice 1288 only."),
    ],
    ids=["yahoo", "yahoo-in-polish", "protonmail"],
)
def test_yahoo_and_protonmail_quotes_are_dropped_from_html(
    sender: str, html: str, said: str
) -> None:
    request = parse(_html_only(sender, html))
    assert request.new_text.split() == said.split()
    assert "all invoices" not in request.new_text
    assert "Proton Mail" not in request.new_text
    intent = read_intent(request.new_text, request.subject, "unpaid")
    assert (intent.kind, intent.invoice) == ("invoice", 1288)
