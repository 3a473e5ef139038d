"""What the sender just wrote: quoted history, signatures and legal footers taken away.

Mail clients put the history of a thread under (or, bottom-posting, above) the new text in
their own ways: ``>`` quote lines; an attribution line ("On … wrote:", "Le … a écrit :",
"Am … schrieb …:", "El … escribió:", "Op … schreef …:", "Ar … ysgrifennodd …:"); Outlook's
header block ("From: … Sent: …", "Von: … Gesendet: …", "De : … Envoyé : …", "Van: …
Verzonden: …", "Oddi wrth: … Anfonwyd: …"); separators ("-----Original Message-----",
"---------- Forwarded message ---------", "Begin forwarded message:"). Under the new text
come signatures ("-- ", or a sign-off such as "Kind regards," / "Mit freundlichen Grüßen" /
"Cofion" and the name under it), mobile footers ("Sent from my iPhone") and legal footers
("This email is confidential … notify the sender and delete it"). All of them are written
by machines or are not the request, and their words ("all copies", "due", "balance") must
not be read as one.

HTML bodies are first turned into text by :mod:`bot.mailparse`, which drops the elements
named in :data:`QUOTE_CLASSES` and everything after an element with an id in
:data:`CUT_IDS`; what is left goes through :func:`strip_quotes` like plain text.
"""

from __future__ import annotations

import re

#: HTML wrappers of quoted history or signatures, dropped with their content.
QUOTE_CLASSES = frozenset(
    [
        "gmail_quote",
        "gmail_quote_container",
        "gmail_extra",
        "gmail_signature",
        "moz-cite-prefix",
        "moz-signature",
        "yahoo_quoted",
        "protonmail_quote",
        "protonmail_signature_block",
    ]
)
#: Outlook marks where its header block of the quoted message starts; everything after it
#: is history, and it is not nested inside the marker.
CUT_IDS = frozenset(
    ["divrplyfwdmsg", "appendonsend", "stopspelling", "ms-outlook-mobile-signature"]
)

_ATTRIBUTION = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^on\b.{0,250}\bwrote\s?:$",
        r"^le\b.{0,250}\ba écrit\s?:$",
        r"^am\b.{0,250}\bschrieb\b.{0,250}:$",
        r"^el\b.{0,250}\bescribió\s?:$",
        r"^op\b.{0,250}\b(schreef\b.{0,250}|het volgende geschreven\s?):$",
        r"^ar\b.{0,250}\bysgrifennodd\b.{0,250}:$",
        r"^il\b.{0,250}\bha scritto\s?:$",
        r"^em\b.{0,250}\bescreveu\s?:$",
        r"^den\b.{0,250}\bskrev\b.{0,250}:$",
    )
]
# "Jane Smith <jane@example.com> wrote:" with no date: only trusted right above a quote.
_BARE_ATTRIBUTION = re.compile(
    r"^.{1,250}\b(wrote|schrieb|a écrit|escribió|schreef|ysgrifennodd)\s?:$", re.IGNORECASE
)
_SEPARATOR = re.compile(
    r"^-{2,}\s*(original message|forwarded message|ursprüngliche nachricht|"
    r"weitergeleitete nachricht|message d'origine|message transféré|mensaje original|"
    r"mensaje reenviado|oorspronkelijk bericht|doorgestuurd bericht|neges wreiddiol|"
    r"neges wedi'i hanfon ymlaen|messaggio originale|originalmeddelande)\s*-{2,}$"
    r"|^(begin forwarded message|début du message réexpédié|anfang der weitergeleiteten "
    r"nachricht|inicio del mensaje reenviado|begin doorgestuurd bericht|"
    r"dechrau'r neges a anfonwyd ymlaen)\s?:$"
    r"|^_{10,}$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\*?(from|von|de|van|oddi wrth|da|från|fra)\s?:\*?\s", re.IGNORECASE)
_HEADER_SENT = re.compile(
    r"^\*?(sent|date|gesendet|datum|envoyé|date d'envoi|verzonden|enviado|enviado el|fecha|"
    r"anfonwyd|dyddiad|inviato|skickat|sendt)\s?:\*?\s",
    re.IGNORECASE,
)
_MOBILE_FOOTER = re.compile(
    r"^(sent from my\b.*|sent from (outlook|mail|yahoo mail|aol|gmail)\b.*|get outlook for\b.*"
    r"|sent (with|via|using)\b.*\b(proton ?mail|spark|blackberry|airmail|newton)\b.*"
    r"|von meinem \S+ gesendet|gesendet von meinem \S+.*|envoyé de mon \S+.*"
    r"|enviado desde mi \S+.*|verzonden (vanaf|met) mijn \S+.*|anfonwyd o fy \S+.*"
    r"|obtenir outlook pour\b.*|outlook für \S+ beziehen|outlook voor \S+ downloaden"
    r"|descargar outlook para\b.*)$",
    re.IGNORECASE,
)
# A line that is only a sign-off; the name (and any signature block) follows it.
_SIGN_OFF = re.compile(
    r"^(many thanks|thanks( again| in advance| so much)?|thank you( so much| in advance)?|"
    r"with thanks|cheers|ta|regards|kind regards|best regards|warm regards|warmest regards|"
    r"many regards|best wishes|best|all the best|yours sincerely|yours faithfully|sincerely|"
    r"speak soon|"
    r"diolch( yn fawr)?( iawn)?|cofion( cynnes| gorau)?|yn gywir|dymuniadau gorau|pob hwyl|"
    r"cordialement|bien cordialement|bien à vous|salutations|meilleures salutations|"
    r"sincères salutations|merci( beaucoup| d'avance)?|amicalement|bonne journée|"
    r"mit freundlichen grüßen|mit freundlichen grüssen|freundliche grüße|viele grüße|"
    r"beste grüße|liebe grüße|herzliche grüße|grüße|gruß|danke( schön)?|vielen dank|mfg|lg|vg|"
    r"saludos( cordiales)?|un saludo|un cordial saludo|atentamente|cordialmente|"
    r"(muchas )?gracias|"
    r"met vriendelijke groet(en)?|vriendelijke groet(en)?|hartelijke groet(en)?|groet(en)?|"
    r"mvg|bedankt|alvast bedankt|dank je( wel)?|dank u( wel)?)[\s,.!]*$",
    re.IGNORECASE,
)
#: Lines of a signature block are no longer than this.
_MAX_CARD_LINE = 90
_CONTACT = re.compile(
    r"\b(?:t|tel|tél|tele?phone|phone|mob|mobile|m|ffôn|fax|tfn|telefon|teléfono|telefoon)\b"
    r"\.?\s*:?\s*\+?\(?\d|\bwww\.|https?://|\b[\w.+-]+@[\w-]+\.[\w.]+"
    r"|^\+?\(?\d[\d ()-]{7,}$",
    re.IGNORECASE,
)
#: A name line under a sign-off is short and asks nothing.
_MAX_NAME_WORDS = 5
# Words of confidentiality notices and company footers. One strong cue, or two weak ones,
# make a paragraph a legal footer.
_LEGAL_STRONG = re.compile(
    r"intended (solely |only )?for the (use of the )?(addressee|named|intended|individual|person)"
    r"|(is|are) not the intended recipient|received this (e-?mail|message|communication) in error"
    r"|notify the sender"
    r"|this (e-?mail|message)( and any (files|attachments)( transmitted with it)?)? (is|are|may be)"
    r" (strictly )?(confidential|privileged)"
    r"|registered (in england|office|in wales|in scotland)|company (registration )?(no|number)\b"
    r"|consider the environment before printing|think before you print"
    r"|nicht der (beabsichtigte|richtige) empfänger|irrtümlich erhalten|vertrauliche informationen"
    r"|n'êtes pas le destinataire|destinataire prévu|reçu ce (message|courriel) par erreur"
    r"|no es (usted )?el destinatario|recibido este (mensaje|correo) por error"
    r"|niet de (beoogde )?geadresseerde|dit bericht (is )?uitsluitend bestemd"
    r"|ten onrechte ontvangen|nid chi yw'r derbynnydd"
    r"|wedi derbyn y neges hon (trwy|drwy) gamgymeriad"
    r"|rydym yn croesawu gohebiaeth yn gymraeg|we welcome correspondence in welsh",
    re.IGNORECASE,
)
_LEGAL_WEAK = re.compile(
    r"\b(confidential|privileged|disclaimer|virus(es)?|liability|unauthori[sz]ed|"
    r"prohibited|vat (reg|registration)|vertraulich|haftung|confidentiel|responsabilité|"
    r"confidencial|prohibida|vertrouwelijk|aansprakelijkheid|cyfrinachol|derbynnydd)\b",
    re.IGNORECASE,
)


def strip_quotes(text: str) -> str:
    """``text`` without quoted history, attributions, signatures, mobile and legal footers."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        if stripped.startswith(">"):
            i += 1
            continue
        if _ends_new_text(lines, i):
            break
        span = _attribution_span(lines, i)
        if span:
            following = _next_nonblank(lines, i + span)
            # Above a quote (or nothing) it is only a label, and text may follow the quote
            # (bottom posting); above unquoted text the rest is the history itself.
            if following is None or following.startswith(">"):
                i += span
                continue
            break
        kept.append(line)
        if kept[:-1] and any(k.strip() for k in kept[:-1]) and _SIGN_OFF.match(stripped):
            name = _signed_name(lines, i + 1)
            if name is not None:
                # The sign-off and the name under it stay; what follows is the signature.
                kept.extend(lines[i + 1 : name + 1])
                break
        i += 1
    return _tidy(_without_legal_footer(kept))


def _tidy(lines: list[str]) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in lines)).strip()


def _signed_name(lines: list[str], start: int) -> int | None:
    """The index of the name line under a sign-off, or None if the text goes on instead.

    With nothing at all below the sign-off, the sign-off's own index is returned.
    """
    for j in range(start, len(lines)):
        line = lines[j].strip()
        if not line:
            continue
        words = line.split()
        if len(words) > _MAX_NAME_WORDS or line.endswith(("?", ":")) or re.search(r"\d", line):
            return None
        return j
    return start - 1


def _without_legal_footer(lines: list[str]) -> list[str]:
    """Cut at the first paragraph that reads as a legal footer or a signature block."""
    start = 0
    for i in range(len(lines) + 1):
        if i < len(lines) and lines[i].strip():
            continue
        paragraph = [line.strip() for line in lines[start:i]]
        if paragraph and start > 0 and (_is_legal(" ".join(paragraph)) or _is_card(paragraph)):
            return lines[:start]
        start = i + 1
    return lines


def _is_card(paragraph: list[str]) -> bool:
    """A signature block: short lines, with a telephone number, web or mail address."""
    return (
        len(paragraph) >= 2
        and all(len(line) <= _MAX_CARD_LINE for line in paragraph)
        and any(_CONTACT.search(line) for line in paragraph)
    )


def _is_legal(paragraph: str) -> bool:
    return bool(_LEGAL_STRONG.search(paragraph)) or len(_LEGAL_WEAK.findall(paragraph)) >= 2


def _ends_new_text(lines: list[str], i: int) -> bool:
    line = lines[i].rstrip("\n")
    stripped = line.strip()
    if line in ("-- ", "--") or _SEPARATOR.match(stripped) or _MOBILE_FOOTER.match(stripped):
        return True
    if _HEADER_FROM.match(stripped):
        # Outlook's header block: "From:" with "Sent:" (or "Date:") a line or few below.
        return any(_HEADER_SENT.match(line.strip()) for line in lines[i + 1 : i + 5])
    return False


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines the attribution starting at line ``i`` spans (clients wrap it), or 0."""
    for span in (1, 2, 3):
        if i + span > len(lines):
            break
        joined = " ".join(line.strip() for line in lines[i : i + span])
        if any(pattern.match(joined) for pattern in _ATTRIBUTION):
            return span
    if _BARE_ATTRIBUTION.match(lines[i].strip()):
        following = _next_nonblank(lines, i + 1)
        if following is not None and following.startswith(">"):
            return 1
    return 0


def _next_nonblank(lines: list[str], start: int) -> str | None:
    for line in lines[start:]:
        if line.strip():
            return line.strip()
    return None
