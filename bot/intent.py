"""What a request asks for, and in which language it asks.

A request asks for all of a customer's invoices, the unpaid ones, a statement (the unpaid
ones, as a statement), one invoice or several by number ("invoice 1234", "#1234",
"INV-1234", "invoices 1241 to 1248", "1234 and 1250"), or just "my invoices" (the account's
default, understood). Anything else gets the default, marked not understood, so the reply
can say what may be asked. The words are the lexicons of :mod:`bot.request_words`, in
English, Welsh, French, German, Spanish and Dutch.

The words are read from what the sender just wrote; the subject speaks only when the text
asks for nothing in particular, so a bare reply to "Invoice 1234 from Northwind" asks for
invoice 1234 while "send me everything" under the same subject asks for all of them.
Whether the invoices named belong to the sender is the pipeline's question, not this
module's: it fills in :attr:`Intent.not_found` once KashFlow has answered.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot import request_words as words
from bot.language import Language, detect
from permalink.scopes import MAX_SCOPE_INVOICES, DefaultScope, Scope, ScopeKind

Kind = ScopeKind


@dataclass(frozen=True, slots=True)
class Intent:
    """What was asked for.

    ``understood`` is False when nothing was recognised and the scope is the default;
    ``statement`` says a statement was asked for (its scope is the unpaid invoices);
    ``language`` is the request's language, ``None`` when the text gave too little;
    ``not_found`` holds the invoice numbers asked for that are not the sender's (or do not
    exist: the two are never told apart).
    """

    scope: Scope
    understood: bool = True
    statement: bool = False
    language: Language | None = None
    not_found: tuple[int, ...] = ()

    @property
    def kind(self) -> Kind:
        return self.scope.kind

    @property
    def numbers(self) -> tuple[int, ...]:
        return self.scope.numbers

    @property
    def invoice(self) -> int | None:
        """The invoice number when exactly one is asked for."""
        return self.scope.invoice


def _either(patterns: list[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])(?:" + "|".join(patterns) + r")(?![\w-])", re.IGNORECASE)


_ALL = _either(words.ALL)
_UNPAID = _either(words.UNPAID)
_STATEMENT = _either(words.STATEMENT)
_OTHERS = _either(words.OTHERS)
_ASK = _either(words.ASK)
_IDIOMS = _either(words.IDIOMS)
_POLITE = _either(words.POLITE)
_INVOICE = _either(words.INVOICE)
# "not just the unpaid ones, all of them": the unpaid words there are no request.
_NOT_JUST = re.compile(
    r"\bnot (?:just|only) (?:the )?(?:unpaid|outstanding|overdue|open)\b", re.IGNORECASE
)
_BANK_STATEMENT = re.compile(r"\bbank statements?\b", re.IGNORECASE)

# -- invoice numbers --------------------------------------------------------------------

_NOUN = "(?:" + "|".join(words.INVOICE) + ")"
_LABEL = "(?:" + "|".join(words.NUMBER_LABEL) + ")"
_NUM = r"0*(?P<n>[1-9][0-9]{0,8})(?![0-9]|[/:.,][0-9]|\s?%|\s?(?:€|eur|gbp|usd)\b)"
_ALONE_LABEL = r"n°|nº|no\.|nr\.|núm\.|número|numéro|nummer|rhif|number"
# What may stand between an anchor and its number: "invoice no. 1234", "INV-1234",
# "factura núm. 1234", "Rechnung Nr. 1234", "#1234", and "invoices from 1241 (to 1248)".
_FROM = r"from|de la|de|von|van|del|desde|o|between|entre|zwischen|tussen|rhwng"
_LEAD = rf"(?:\s*(?:{_LABEL}))?\s*[#:\-]?\s*#?\s*(?:(?P<start>{_FROM})\s+)?"
_ANCHOR = re.compile(
    rf"(?<![\w-])(?:{_NOUN}(?![\w])\.?{_LEAD}|(?:{_ALONE_LABEL})\s*[#:]?\s*|#\s?|inv[-#]?\s?)"
    + _NUM,
    re.IGNORECASE,
)
_RANGE_WORDS = (
    r"-|–|—|to|through|thru|till|until|up to|à|au|bis|hasta|al|tot en met|t/m|tot|hyd at|i"
)
_LIST_WORDS = r",|;|&|\+|and|et|und|y|e|en|ac|or|ou|oder|o|of|neu|as well as|plus"
_NEXT = re.compile(
    rf"\s*(?:(?P<range>{_RANGE_WORDS})|(?P<list>{_LIST_WORDS})|(?P<a>,?\s*a))\s*(?:also\s+)?(?:(?:the\s+)?{_NOUN}\.?\s*)?"
    rf"(?:{_LABEL}\s*)?[#:]?\s*#?\s*(?:inv[-#]?\s?)?(?:la\s+)?" + _NUM,
    re.IGNORECASE,
)
_BETWEEN = re.compile(r"(?:between|entre|zwischen|tussen|rhwng)\s+\S*$", re.IGNORECASE)
_BARE = re.compile(r"(?<![\w£$€#./:,-])(?<![0-9] )([1-9][0-9]{2,8})(?![\w%/:]|[.,][0-9])")
_NOT_BEFORE = re.compile(rf"(?:{words.NOT_INVOICE_BEFORE})\W*$", re.IGNORECASE)
_YEAR = range(1990, 2100)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")


def _run(text: str, start: int, first: int, language: Language | None) -> tuple[list[int], int]:
    """The numbers of a list or range that begins with ``first``, and where it ends."""
    numbers, previous, end = [first], first, start
    between = bool(_BETWEEN.search(text[max(0, start - 40) : start]))
    while True:
        match = _NEXT.match(text, end)
        if match is None:
            break
        number = int(match.group("n"))
        ranged, listed, welsh_or_spanish_a = (
            match.group("range"),
            match.group("list"),
            match.group("a"),
        )
        if welsh_or_spanish_a:
            # "1241 a 1248": Spanish for a range, Welsh for a list.
            ranged = "a" if language == "es" else None
        if listed and between and listed.strip() in ("and", "et", "und", "y", "en", "ac"):
            ranged, between = listed, False
        if len(str(number)) + 1 < len(str(first)):
            digits = str(previous)
            whole = int(digits[: len(digits) - len(str(number))] + str(number))
            if not (ranged and len(str(number)) >= 2 and whole > previous):
                break  # "invoice 1234 and 2 others": a count, not an invoice
            number = whole  # "1241-48": the end of a range written short
        if ranged:
            low, high = sorted((previous, number))
            if high - low >= MAX_SCOPE_INVOICES:
                numbers.extend(range(low, low + MAX_SCOPE_INVOICES + 1))
            else:
                numbers.extend(range(low, high + 1))
        else:
            numbers.append(number)
        previous, end = number, match.end()
    return numbers, end


def invoice_numbers(text: str, language: Language | None = None) -> list[int]:
    """The invoice numbers ``text`` names, in order, without repeats."""
    found: list[int] = []
    position = 0
    while True:
        match = _ANCHOR.search(text, position)
        if match is None:
            break
        numbers, position = _run(text, match.end(), int(match.group("n")), language)
        if match.group("start") and len(numbers) == 1:
            continue  # "the invoice from 12 March": a date, not "invoices from 1241 to 1248"
        found.extend(numbers)
    if not found:
        found = _bare_numbers(text, language)
    return list(dict.fromkeys(found))


def _bare_numbers(text: str, language: Language | None) -> list[int]:
    """Numbers with no invoice word before them, in a sentence that asks for something."""
    found: list[int] = []
    for sentence in _SENTENCE.findall(text):
        if not (_ASK.search(sentence) or _INVOICE.search(sentence)):
            continue
        position = 0
        while match := _BARE.search(sentence, position):
            number, position = int(match.group(1)), match.end()
            if number in _YEAR or _NOT_BEFORE.search(sentence[: match.start()]):
                continue
            # "I only need 1290 to 1293": a bare number starts a list or range too.
            numbers, position = _run(sentence, position, number, language)
            found.extend(numbers)
    return found


# -- reading ----------------------------------------------------------------------------


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("’", "'").replace("‘", "'")
    text = _IDIOMS.sub(" ", text)
    text = _NOT_JUST.sub(" ", text)
    return _BANK_STATEMENT.sub(" ", text)


@dataclass(frozen=True, slots=True)
class _Reading:
    numbers: list[int]
    all: bool
    unpaid: bool
    statement: bool
    others: bool
    asks: bool
    invoice_word: bool
    verb: bool


def _reading(text: str, language: Language | None) -> _Reading:
    normal = _normal(text)
    return _Reading(
        numbers=invoice_numbers(normal, language),
        all=bool(_ALL.search(normal)),
        unpaid=bool(_UNPAID.search(normal)),
        statement=bool(_STATEMENT.search(normal)),
        others=bool(_OTHERS.search(normal)),
        asks=bool(_ASK.search(normal) or _POLITE.search(normal)) or "?" in normal,
        invoice_word=bool(_INVOICE.search(normal)),
        verb=bool(_ASK.search(normal)),
    )


def _specific(reading: _Reading) -> tuple[ScopeKind, tuple[int, ...], bool] | None:
    """``(kind, numbers, statement)`` when the reading asks for something in particular."""
    numbers = reading.numbers
    # "Invoice 1234 and all the others": the rest outranks the number named.
    widened = reading.others and (reading.all or reading.unpaid)
    if numbers and not widened:
        if len(numbers) > MAX_SCOPE_INVOICES:
            return "all", (), reading.statement
        return "invoice", tuple(numbers), reading.statement
    # "All the ones we still owe" narrows "all"; a statement is of what is owed.
    if reading.unpaid or (reading.statement and not reading.all):
        return "unpaid", (), reading.statement
    if reading.all:
        return "all", (), reading.statement
    return None


def read_intent(text: str, subject: str, default: DefaultScope) -> Intent:
    """The request in ``text`` (the sender's new text), else in ``subject``, else ``default``.

    Pass ``subject=""`` when the subject is not the sender's own words (a reply to one of
    the bot's messages carries the bot's subject).
    """
    language = detect(text) or detect(subject)
    body = _reading(text, language)
    found = _specific(body)
    if found is None and subject:
        found = _specific(_reading(subject, language))
    if found is not None:
        kind, numbers, statement = found
        return Intent(Scope(kind, numbers), statement=statement, language=language)
    # "Could you send me my invoices?": understood, and the default is the answer.
    understood = body.invoice_word and body.asks
    return Intent(Scope(default), understood=understood, language=language)


def _asks(text: str) -> bool:
    reading = _reading(text, detect(text))
    # "Yes please, all of them" asks; "Vielen Dank, hat alles geklappt!" does not.
    cue = reading.asks or reading.invoice_word or bool(reading.numbers)
    return (
        (_specific(reading) is not None and cue)
        or reading.verb
        or (reading.invoice_word and reading.asks)
    )


def asks_anything(text: str) -> bool:
    """Whether ``text`` asks for something: what is recognised, or any verb of asking.

    A reply to the bot's own message is answered only when it does ("Thanks! Could you
    send just the unpaid ones?"), never when it only thanks ("Got it, thank you!").
    """
    return _asks(text[:2000])
