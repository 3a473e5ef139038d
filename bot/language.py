"""Which of the supported languages a short piece of mail is written in.

English, Welsh, French, German, Spanish and Dutch, told apart by small lexicons: each
language's most common function words, its words for invoices, paying and greeting, and a
few letters only it uses (ß, ñ, ŵ …). A word shared by several languages counts a share to
each. Requests to an accounts address are short, so the lexicons favour the words such mail
is made of; names and numbers count for nothing. No network, no model: a pure function.

:func:`detect` answers ``None`` when the text gives too little to go on (a bare number, a
name); :func:`reply_language` then falls back along the caller's list, and finally to
English.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, get_args

Language = Literal["en", "cy", "fr", "de", "es", "nl"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
DEFAULT_LANGUAGE: Language = "en"
#: Names of the languages, in English, for logs and the activity page.
NAMES: dict[Language, str] = {
    "en": "English",
    "cy": "Welsh",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "nl": "Dutch",
}

_LEXICON: dict[Language, str] = {
    "en": """
        the a an and or of to in on for from with at by is are was were be been have has had
        do does did we you i it this that these those our your my me us they them their
        please could would can may send resend copy copies invoice invoices bill bills
        thanks thank hi hello dear regards kind best cheers all every everything unpaid
        outstanding overdue owe owed owing due balance paid pay statement account just only
        still yet what which any some again need get morning afternoon sorry not one ones
        there here has haven't don't we've we're i'm it's what's can't could you'd also
    """,
    "cy": """
        y yr a ac i o yn ar am gan gyda mae ydy oes roedd bydd wedi heb ein eich fy ei eu
        ni chi fi nhw hyn hon hwn hynny sydd os neu ond hefyd
        anfoneb anfonebau hanfoneb hanfonebau bil biliau anfon anfonwch ail gopi copi copïau
        diolch bore da prynhawn helo shwmae annwyl cofion gorau yn gywir pob hwyl bawb
        holl i gyd cyfan talu dalu thalu ddyledus dyledus dyled ddyled balans gweddill hwyr
        datganiad cyfriflen cyfrif rhif plîs os gwelwch dda gwelwch dda allech allwch
        fyddech hoffwn angen arnom arnon faint beth pa rhain nad eto dim ond unig
    """,
    "fr": """
        le la les un une des du de et ou à au aux en dans pour par sur avec est sont était
        nous vous je il elle ce cette ces notre nos votre vos mon ma mes leur leurs me
        pouvez pourriez voudriez merci bonjour bonsoir madame monsieur cordialement
        salutations bien envoyer renvoyer envoyez renvoyez copie copies facture factures
        toutes tous impayée impayées impayés payées réglées solde relevé compte dû doit
        devons reste s'il plaît svp encore seulement uniquement celles ceux qui que quoi
        ne pas pourrais j'ai n'ai d'avance numéro échues retard attente
    """,
    "de": """
        der die das den dem des ein eine einen einem und oder zu im in am an auf für von
        mit bei ist sind war waren haben hat hatten wir sie ich es dies diese dieser unser
        unsere ihre ihr mein meine mir uns bitte könnten können würden senden schicken
        zusenden übersenden erneut kopie kopien rechnung rechnungen rechnungsnummer danke
        dank vielen hallo guten morgen tag sehr geehrte geehrter damen herren freundlichen
        grüßen grüße gruß alle sämtliche offen offene offenen unbezahlt unbezahlte
        ausstehende ausstehenden überfällig überfällige fällig saldo kontoauszug konto
        noch nur nicht bezahlt schulden nochmals einmal was welche
    """,
    "es": """
        el la los las un una unos unas y o de del a al en con por para sobre es son era
        nosotros usted ustedes yo lo este esta estos estas nuestro nuestra nuestros
        nuestras su sus mi mis me nos podría podrían pueden puede enviar envíen envíe
        reenviar mandar copia copias factura facturas gracias muchas hola buenos buenas
        días tardes estimado estimada estimados saludos atentamente cordial todas todos
        pendiente pendientes impagada impagadas pagadas vencidas saldo extracto cuenta
        estado debemos deuda favor solo solamente otra vez número qué cuáles cuánto
        necesito necesitamos quisiera también
    """,
    "nl": """
        de het een en of van te in op voor met aan bij is zijn was waren hebben heeft had
        wij we u jij ik dit dat deze die ons onze uw jullie mijn me mij hun
        kunt kunnen zou zouden wilt willen sturen toesturen opsturen nogmaals opnieuw kopie
        kopieën factuur facturen factuurnummer bedankt dank alvast hallo goedemorgen
        goedemiddag beste geachte heer mevrouw groet groeten vriendelijke alle allemaal
        openstaande openstaand onbetaalde onbetaald betaald vervallen achterstallig saldo
        rekeningoverzicht overzicht rekening nog alleen niet graag svp welke wat hoeveel
        verschuldigd nummer ook
    """,
}
# Letters (or letter pairs) that all but give a language away.
_LETTERS: dict[Language, tuple[str, ...]] = {
    "cy": ("ŵ", "ŷ", "ll", "dd", "wy"),
    "fr": ("ç", "œ", "è", "ê", "à", "ù", "â", "î", "ô"),
    "de": ("ß", "ä", "ö", "ü", "sch"),
    "es": ("ñ", "¿", "¡", "á", "í", "ó", "ú"),
    "nl": ("ij", "oe", "aa", "uu", "ë"),
    "en": ("th", "wh"),
}
_LETTER_WEIGHT = 0.15
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
#: Fewer points than this and the text says too little.
_MIN_SCORE = 1.0


def _weights() -> dict[str, dict[Language, float]]:
    owners: dict[str, list[Language]] = {}
    for language, words in _LEXICON.items():
        for word in set(words.split()):
            owners.setdefault(word, []).append(language)
    return {
        word: dict.fromkeys(languages, 1.0 / len(languages)) for word, languages in owners.items()
    }


_WEIGHTS = _weights()


def scores(text: str) -> dict[Language, float]:
    """Each language's points for ``text``: the evidence :func:`detect` weighs."""
    text = unicodedata.normalize("NFC", text).lower().replace("’", "'")
    points: dict[Language, float] = dict.fromkeys(LANGUAGES, 0.0)
    for word in _WORD.findall(text):
        for language, weight in _WEIGHTS.get(word, {}).items():
            points[language] += weight
        for language, marks in _LETTERS.items():
            points[language] += _LETTER_WEIGHT * sum(mark in word for mark in marks)
    return points


def detect(text: str) -> Language | None:
    """The language ``text`` is written in, or None when it says too little to tell."""
    ranked = sorted(scores(text).items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < _MIN_SCORE or top == second:
        return None
    return best


def reply_language(*choices: Language | None) -> Language:
    """The first language known among ``choices`` (the request's, the customer's …)."""
    for choice in choices:
        if choice is not None:
            return choice
    return DEFAULT_LANGUAGE
