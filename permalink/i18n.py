"""The client's language: which languages there are, how one is chosen, and their catalogues.

Pages, replies and statement packs speak the client's language. The words live in gettext
message catalogues (``permalink/locale/<locale>/LC_MESSAGES/messages.po``, compiled to
``.mo`` by ``make``), written through Babel; numbers, dates and money are written by Babel
for the same locale (:mod:`permalink.presentation`). English (UK) is the source language:
its words are the message ids themselves.

A language is chosen in this order: what the client was set to by the accountant (or,
for a reply, the language the request was written in), then — on a page — what the
browser asks for in ``Accept-Language``, then the account's default (:func:`pick_language`).

Templates use jinja2's i18n extension (``{% trans %}``, ``_()``); :func:`install` makes its
functions read the language from the render context's ``language`` variable, so one
environment serves every language at once and a template rendered without one is English.
"""

from __future__ import annotations

import gettext as stdlib_gettext
import io
import logging
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Final

import jinja2
from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

log = logging.getLogger(__name__)

#: The languages offered, as BCP 47 tags (what ``<html lang>`` says).
LANGUAGES: Final = ("en-GB", "cy", "fr", "de", "es", "nl")
DEFAULT_LANGUAGE: Final = "en-GB"
#: Each language named in itself, for the accountant's choice.
LANGUAGE_NAMES: Final = {
    "en-GB": "English (UK)",
    "cy": "Cymraeg (Welsh)",
    "fr": "Français (French)",
    "de": "Deutsch (German)",
    "es": "Español (Spanish)",
    "nl": "Nederlands (Dutch)",
}
#: Where the catalogues live; the domain is ``messages``.
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
DOMAIN: Final = "messages"

# A browser's "en", "en-US" or "en-IE" still reads best in the one English we have.
_BY_PRIMARY: Final = {tag.split("-")[0].lower(): tag for tag in LANGUAGES}
_MAX_ACCEPT: Final = 1000


def N_(message: str) -> str:
    """Mark ``message`` for the catalogues without translating it (translated when shown)."""
    return message


def supported(tag: str | None) -> str | None:
    """The offered language a tag names (``de-AT`` → ``de``, ``en_us`` → ``en-GB``), else None."""
    if not tag:
        return None
    cleaned = tag.strip().replace("_", "-").lower()
    for language in LANGUAGES:
        if cleaned == language.lower():
            return language
    return _BY_PRIMARY.get(cleaned.split("-")[0])


def pick_language(*candidates: str | None) -> str:
    """The first candidate that is an offered language, else English (UK)."""
    for candidate in candidates:
        chosen = supported(candidate)
        if chosen is not None:
            return chosen
    return DEFAULT_LANGUAGE


def negotiate(accept_language: str | None) -> str | None:
    """The offered language a browser's ``Accept-Language`` prefers most, else None.

    Ranges are weighed by their ``q`` (RFC 9110 §12.5.4); ``*`` and ``q=0`` choose nothing.
    """
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language[:_MAX_ACCEPT].split(",")):
        tag, _, params = item.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        language = supported(tag)
        if language is not None and weight > 0:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


def locale_of(language: str | None) -> Locale:
    """The Babel locale that writes numbers, dates and money for ``language``."""
    return _locale(pick_language(language))


@cache  # one per offered language: parsing it again for every amount was most of the cost
def _locale(language: str) -> Locale:
    return Locale.parse(language, sep="-")


def catalogue_path(language: str, suffix: str = ".po") -> Path:
    return LOCALE_DIR / str(locale_of(language)) / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


@cache
def translations(language: str | None) -> stdlib_gettext.NullTranslations:
    """The compiled catalogue of ``language`` (English, the source, needs none).

    ``make`` compiles each ``.po`` to its ``.mo``; a checkout where that has not happened
    (or whose ``.po`` is newer) compiles the ``.po`` in memory instead, so the words shown
    are always those of the catalogue in the tree.
    """
    chosen = pick_language(language)
    if chosen == DEFAULT_LANGUAGE:
        return stdlib_gettext.NullTranslations()
    po, mo = catalogue_path(chosen), catalogue_path(chosen, ".mo")
    if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as compiled:
            return Translations(compiled, domain=DOMAIN)
    log.info("compiling the %s catalogue in memory (run `make` to build its .mo)", chosen)
    with po.open("rb") as source:
        catalog = read_po(source, locale=str(locale_of(chosen)))
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext(language: str | None, message: str) -> str:
    return translations(language).gettext(message)


def ngettext(language: str | None, singular: str, plural: str, n: int) -> str:
    return translations(language).ngettext(singular, plural, n)


class Words:
    """One language's ``_`` and ``ngettext``, for code that writes many sentences."""

    def __init__(self, language: str | None) -> None:
        self.language = pick_language(language)
        self._catalogue = translations(self.language)

    def __call__(self, message: str, **values: Any) -> str:
        text = self._catalogue.gettext(message)
        return text % values if values else text

    def plural(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = self._catalogue.ngettext(singular, plural, n)
        return text % {"num": n, **values}


# -- jinja2 ---------------------------------------------------------------------------------


@jinja2.pass_context
def _context_gettext(context: jinja2.runtime.Context, message: str) -> str:
    return gettext(context.get("language"), message)


@jinja2.pass_context
def _context_ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    return ngettext(context.get("language"), singular, plural, n)


def install(env: jinja2.Environment) -> None:
    """Give ``env`` (built with ``jinja2.ext.i18n``) gettext functions that follow the
    ``language`` of whatever is being rendered, with jinja2's "new style" formatting
    (``_("%(name)s", name=…)``, escaped in HTML)."""
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _context_gettext, _context_ngettext, newstyle=True
    )


def languages_offered() -> Iterable[tuple[str, str]]:
    """(tag, name) for each offered language, for a form's choices."""
    return ((tag, LANGUAGE_NAMES[tag]) for tag in LANGUAGES)


__all__ = [
    "DEFAULT_LANGUAGE",
    "DOMAIN",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "LOCALE_DIR",
    "N_",
    "Words",
    "catalogue_path",
    "gettext",
    "install",
    "languages_offered",
    "locale_of",
    "negotiate",
    "ngettext",
    "pick_language",
    "supported",
    "translations",
]
