"""The client's language: choosing it, the catalogues, and templates that leave no word out.

Every string a client can read in a page or a mail template must go through gettext, and
every catalogue must translate every message the code and templates hold: either failing
would show a German client an English sentence.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2 import nodes

from permalink import TEMPLATES
from permalink.i18n import (
    LANGUAGES,
    LOCALE_DIR,
    Words,
    catalogue_path,
    negotiate,
    pick_language,
    supported,
    translations,
)
from permalink.presentation import format_date, format_money

ROOT = Path(__file__).resolve().parent.parent
CLIENT_TEMPLATES = sorted([*(TEMPLATES / "web").glob("*.html"), *(TEMPLATES / "mail").glob("*.*")])
GETTEXT = {"_", "gettext", "ngettext"}
# Attributes a reader (or a screen reader) meets as words.
READ_ATTRIBUTES = {"alt", "title", "aria-label", "placeholder", "data-label", "data-busy-text"}
WORD = re.compile(r"[^\W\d_]{2,}")


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-US,en;q=0.9", "en-GB"),
        ("fr-CA;q=0.4, nl;q=0.8", "nl"),
        ("ja, cy;q=0.5", "cy"),
        ("es;q=0", None),
        ("ja, zh", None),
        ("", None),
        ("*", None),
        ("de;q=banana, es", "es"),
    ],
)
def test_the_browser_language_is_read_by_its_weights(header: str, chosen: str | None) -> None:
    assert negotiate(header) == chosen


def test_a_language_is_chosen_in_order_and_english_is_the_fallback() -> None:
    assert pick_language(None, "fr", "de") == "fr"
    assert pick_language("xx", None, "de_AT") == "de"
    assert pick_language(None, None) == "en-GB"
    assert supported("EN_gb") == "en-GB"
    assert supported("klingon") is None


@pytest.mark.parametrize("language", [tag for tag in LANGUAGES if tag != "en-GB"])
def test_each_catalogue_translates_every_message_and_keeps_its_placeholders(
    language: str,
) -> None:
    path = catalogue_path(language)
    with path.open("rb") as source:
        catalogue = read_po(source, locale=path.parent.parent.name)
    extracted = {
        message[2] if isinstance(message[2], str) else message[2][0]
        for message in extract_from_dir(
            ROOT,
            method_map=_method_map(),
            options_map={"**.html": {"trimmed": "true"}, "**.txt": {"trimmed": "true"}},
            keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
        )
    }
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0])
        for m in catalogue
        if m.id
        and m.string
        and all(m.string if isinstance(m.string, tuple) else [m.string])
        and not m.fuzzy
    }
    assert extracted - translated == set(), f"{language} lacks translations"
    problems = [(m.id, errors) for m, errors in catalogue.check()]
    assert problems == []


def _method_map() -> list[tuple[str, str]]:
    mapping = []
    section = ""
    for line in (LOCALE_DIR / "babel.cfg").read_text().splitlines():
        match = re.fullmatch(r"\[(\w+): (.+)\]", line.strip())
        if match:
            section = match.group(1)
            mapping.append((match.group(2), section))
    return mapping


def test_a_catalogue_speaks_its_language() -> None:
    assert Words("de")("To pay") == "Zu zahlen"
    assert Words("cy")("How to pay") == "Sut i dalu"
    assert Words("nl").plural("%(count)s invoice", "%(count)s invoices", 3, count=3) == (
        "3 facturen"
    )
    assert translations("en-GB").gettext("To pay") == "To pay"


def test_dates_and_money_are_written_as_each_language_writes_them() -> None:
    day = date(2026, 12, 3)
    assert format_date(day, "en-GB") == "3 Dec 2026"
    assert format_date(day, "cy") == "3 Rhag 2026"  # the README's example
    assert format_date(day, "de") == "03.12.2026"
    assert format_date(day, "fr") == "3 déc. 2026"
    assert format_money(Decimal("1002"), "EUR", "de") == "1.002,00\xa0€"
    assert format_money(Decimal("1008"), "GBP", "en-GB") == "£1,008.00"


# -- every word in a client's template goes through gettext --------------------------------


class _Words(HTMLParser):
    """The words of a template's literal text and of its read-aloud attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        for name, value in attrs:
            if name in READ_ATTRIBUTES and value:
                self.found += WORD.findall(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.found += WORD.findall(data)


def _literal_text(template: nodes.Template, html: bool) -> list[str]:
    """Words in the template's literal text (tags and attribute names aside) and in the
    string constants it prints, outside gettext."""
    document: list[str] = []
    words: list[str] = []
    for output in template.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                document.append(child.data)
            else:
                document.append("0")  # where a value goes: no words of its own
                words += _shown_constants(child)
    text = "".join(document)
    if html:
        parser = _Words()
        parser.feed(text)
        parser.close()
        return words + parser.found
    return words + WORD.findall(text)


def _shown_constants(node: nodes.Node) -> list[str]:
    """String constants an expression would print, outside gettext calls."""
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name in GETTEXT
    ):
        return []
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return WORD.findall(node.value)
    shown: list[str] = []
    if isinstance(node, nodes.CondExpr):
        for branch in (node.expr1, node.expr2):
            if branch is not None:
                shown += _shown_constants(branch)
    elif isinstance(node, nodes.Concat | nodes.Add):
        for part in node.iter_child_nodes():
            shown += _shown_constants(part)
    elif isinstance(node, nodes.Filter) and node.node is not None:
        shown += _shown_constants(node.node)
    return shown


@pytest.mark.parametrize("path", CLIENT_TEMPLATES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_word_in_a_client_template_is_translatable(path: Path) -> None:
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    tree = env.parse(path.read_text(encoding="utf-8"))
    # Jinja comments are gone from the tree; {% trans %} blocks are gettext calls.
    found = _literal_text(tree, html=path.suffix == ".html")
    assert found == [], f"untranslatable words in {path.name}: {found}"


def test_the_check_catches_a_word_left_out() -> None:
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    for source in (
        "<p>Total outstanding</p>",
        '<img alt="Our logo" src="x">',
        "{{ 'Paid' if paid else _('Due') }}",
        "<p>{{ _('To pay') }} now</p>",
    ):
        assert _literal_text(env.parse(source), html=True) != [], source
    for source in (
        "<p>{{ _('To pay') }}</p>",
        "{% trans %}Hello{% endtrans %}",
        "<p>{{ amount }}</p>",
    ):
        assert _literal_text(env.parse(source), html=True) == [], source


def test_compiled_catalogues_match_their_sources() -> None:
    for language in LANGUAGES[1:]:
        po = catalogue_path(language)
        with po.open("rb") as source:
            catalogue = read_po(source)
        compiled = translations(language)
        for message in catalogue:
            if message.id and isinstance(message.id, str):
                assert compiled.gettext(message.id) == message.string, (language, message.id)
