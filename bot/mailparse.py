"""Reading an inbound request mail: raw bytes in, a typed ``Request`` out.

This module owns everything the bot learns from a message — who claims to have sent it, the
headers the guards judge (RFC 3834 and loop markers), and ``new_text``: what the sender has
just written, whatever client, charset or encoding produced it (what counts as history,
signature or footer is :mod:`bot.quoting`'s to say). MIME is the stdlib ``email`` package
with ``policy.default``; HTML is turned into text with the stdlib ``html.parser``.

``parse`` never raises: a malformed message yields a ``Request`` holding what could be
read, with ``defects`` saying what could not.
"""

from __future__ import annotations

import codecs
import contextlib
import email
import email.header
import email.utils
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from html.parser import HTMLParser

from bot.quoting import CUT_IDS, QUOTE_CLASSES, strip_quotes

#: How much of the sender's text is kept: enough for any request, bounded for hostile input.
MAX_NEW_TEXT = 10_000
#: Longest header value kept (RFC 5322 §2.1.1 line limit).
MAX_HEADER = 998
#: How much decoded body text is examined at all (the SMTP side bounds the raw size too).
MAX_BODY_TEXT = 500_000


@dataclass(frozen=True, slots=True)
class Request:
    """What one inbound message says, as far as the bot is concerned.

    ``from_address`` is the addr-spec of the first From address with its domain lower-cased
    (``""`` when none could be read); ``lookup_address`` lower-cases it whole, for finding the
    customer. ``reply_to`` is kept only so that tests can prove replies never go there.
    ``envelope_sender`` is the SMTP ``MAIL FROM`` handed in by the receiver (``""`` is the
    null reverse-path, ``None`` means it is unknown); ``return_path`` is the header, if any.
    """

    message_id: str = ""
    from_address: str = ""
    from_display: str = ""
    reply_to: str = ""
    subject: str = ""
    references: tuple[str, ...] = ()
    in_reply_to: str = ""
    auto_submitted: str = ""
    precedence: str = ""
    list_id: str = ""
    list_unsubscribe: str = ""
    x_autoreply: str = ""
    x_autorespond: str = ""
    envelope_sender: str | None = None
    return_path: str = ""
    content_type: str = "text/plain"
    authentication_results: tuple[str, ...] = ()
    new_text: str = ""
    defects: tuple[str, ...] = ()

    @property
    def lookup_address(self) -> str:
        return self.from_address.lower()


def parse(raw: bytes, *, envelope_sender: str | None = None) -> Request:
    """Read ``raw`` into a ``Request``; never raises, whatever the bytes are."""
    notes: list[str] = []
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
    except Exception as exc:  # the parser is lenient, but a bug in it must not lose the mail
        return Request(
            envelope_sender=_envelope(envelope_sender),
            defects=(f"unparseable message: {type(exc).__name__}",),
        )
    headers = _Headers(msg, notes)
    from_address, from_display = headers.first_address("From")
    if not from_address:
        notes.append("no readable From address")
    reply_to, _ = headers.first_address("Reply-To")
    try:
        content_type = msg.get_content_type()
    except Exception:
        content_type = "text/plain"
        notes.append("unreadable Content-Type")
    return Request(
        message_id=_first_msgid(headers.text("Message-ID")),
        from_address=from_address,
        from_display=from_display,
        reply_to=reply_to,
        subject=headers.text("Subject"),
        references=_msgids(headers.text("References")),
        in_reply_to=_first_msgid(headers.text("In-Reply-To")),
        auto_submitted=headers.text("Auto-Submitted").lower(),
        precedence=headers.text("Precedence").lower(),
        list_id=headers.text("List-Id"),
        list_unsubscribe=headers.text("List-Unsubscribe"),
        x_autoreply=headers.text("X-Autoreply"),
        x_autorespond=headers.text("X-Autorespond"),
        envelope_sender=_envelope(envelope_sender),
        return_path=headers.text("Return-Path"),
        content_type=content_type,
        authentication_results=tuple(headers.all_text("Authentication-Results")),
        new_text=_new_text(msg, notes),
        defects=tuple(dict.fromkeys(_defect_names(msg) + notes)),
    )


def _envelope(sender: str | None) -> str | None:
    if sender is None:
        return None
    sender = sender.strip()
    return "" if sender in ("", "<>") else sender.strip("<>")


# --- headers ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MSGID = re.compile(r"<[^<>\s]+>")


class _Headers:
    """Header access that survives headers the policy cannot parse.

    ``policy.default`` parses structured headers on access and, for some malformed values,
    raises; the raw value is then decoded the old way and the failure noted.
    """

    def __init__(self, msg: Message, notes: list[str]) -> None:
        self._msg = msg
        self._notes = notes

    def all_text(self, name: str) -> list[str]:
        try:
            values = [str(v) for v in self._msg.get_all(name, [])]
        except Exception:
            self._notes.append(f"unreadable {name} header")
            values = [_decode_raw(v) for k, v in self._msg.raw_items() if k.lower() == name.lower()]
        # Encoded words may decode to line breaks; a header value is one line, and no
        # longer than RFC 5322 allows a line to be.
        return [_CONTROL.sub(" ", v).strip()[:MAX_HEADER] for v in values]

    def text(self, name: str) -> str:
        values = self.all_text(name)
        return values[0] if values else ""

    def first_address(self, name: str) -> tuple[str, str]:
        """``(addr-spec with lower-cased domain, display name)`` of the first address."""
        try:
            header = self._msg[name]
            if header is None:
                return "", ""
            addresses = getattr(header, "addresses", ())
            for address in addresses:
                if address.username and address.domain:
                    if len(addresses) > 1:
                        self._notes.append(f"{name} holds {len(addresses)} addresses")
                    spec = f"{address.username}@{address.domain.lower()}"
                    return _clean_address(spec), _CONTROL.sub(" ", address.display_name).strip()
        except Exception:
            self._notes.append(f"unreadable {name} header")
        # The structured parse found no usable address: fall back to the forgiving one.
        display, spec = email.utils.parseaddr(self.text(name))
        local, at, domain = spec.rpartition("@")
        if not (at and local and domain):
            return "", ""
        return _clean_address(f"{local}@{domain.lower()}"), display


def _clean_address(spec: str) -> str:
    return "" if _CONTROL.search(spec) or " " in spec else spec


def _decode_raw(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


def _msgids(value: str) -> tuple[str, ...]:
    found = _MSGID.findall(value)
    if not found and value:
        # Some clients drop the angle brackets; the ids are still whitespace-separated.
        parts = (part.strip("<>") for part in value.replace(",", " ").split())
        found = [f"<{part}>" for part in parts if "@" in part]
    return tuple(dict.fromkeys(found))


def _first_msgid(value: str) -> str:
    ids = _msgids(value)
    return ids[0] if ids else value


def _defect_names(msg: Message) -> list[str]:
    names: list[str] = []
    try:
        for part in msg.walk():
            names.extend(type(defect).__name__ for defect in part.defects)
    except Exception:
        names.append("unwalkable MIME structure")
    return names


# --- body ------------------------------------------------------------------------------

# Labels that mean something else in practice (the WHATWG encoding table): mail labelled
# Latin-1 or ASCII is written in Windows-1252 far more often than not.
_CHARSET_ALIASES = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "iso-2022-jp": "iso2022_jp_2",
}


def _new_text(msg: Message, notes: list[str]) -> str:
    part = _body_part(msg)
    if part is None:
        return ""
    text = _decode(part, notes)[:MAX_BODY_TEXT]
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    elif str(part.get_param("format", "")).lower() == "flowed":
        text = unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
    return strip_quotes(text)[:MAX_NEW_TEXT]


def _body_part(msg: Message) -> Message | None:
    body: Message | None = None
    if isinstance(msg, EmailMessage):
        try:
            body = msg.get_body(preferencelist=("plain", "html"))
        except Exception:
            body = None
    if body is None:
        # A text part that get_body will not choose (marked as an attachment, say).
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                return part
    return body


def _decode(part: Message, notes: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        notes.append("undecodable transfer encoding")
        return ""
    if not isinstance(payload, bytes):
        return ""
    label = (part.get_content_charset() or "").strip()
    if not label or label in ("us-ascii", "ascii"):
        # Unlabelled 8-bit text is nearly always UTF-8 these days.
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            pass
    codec = _CHARSET_ALIASES.get(label, label or "cp1252")
    try:
        codecs.lookup(codec)
    except LookupError:
        notes.append(f"unknown charset {label[:40]!r}")
        codec = "utf-8"
    text = payload.decode(codec, errors="replace")
    if "\ufffd" in text:
        notes.append(f"body not valid {label[:40] or 'text'}")
    return text


def unflow(text: str, *, delsp: bool = False) -> str:
    """Rejoin RFC 3676 ``format=flowed`` paragraphs: a line ending in a space continues."""
    out: list[str] = []
    pending = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing (RFC 3676 §4.4)
        if line != "-- " and line.endswith(" ") and not line.startswith(">"):
            pending += line[:-1] if delsp else line
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


# --- HTML to text ----------------------------------------------------------------------

_BLOCK = frozenset(
    [
        "address",
        "article",
        "blockquote",
        "dd",
        "div",
        "dl",
        "dt",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    ]
)
_INVISIBLE = frozenset(["head", "script", "style", "template", "title", "noscript"])
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    ]
)


class _HtmlText(HTMLParser):
    """Collects the visible text of an HTML body, one line per block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._line_start = True
        self._skip_tag = ""
        self._skip_depth = 0
        self._invisible = 0
        self._pre = 0
        self.cut = False

    def _emit(self, text: str) -> None:
        self.out.append(text)
        self._line_start = text.endswith("\n")

    def _soft_break(self) -> None:
        # Nested blocks (<div><div>…) end one line, not several.
        if not self._line_start:
            self._emit("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.cut:
            return
        if self._skip_depth:
            if tag == self._skip_tag and tag not in _VOID:
                self._skip_depth += 1
            return
        values = {name: (value or "").lower() for name, value in attrs}
        if values.get("id", "") in CUT_IDS:
            self.cut = True
            return
        quoted = (tag == "blockquote" and values.get("type") == "cite") or bool(
            QUOTE_CLASSES.intersection(values.get("class", "").split())
        )
        if quoted and tag not in _VOID:
            self._skip_tag, self._skip_depth = tag, 1
            self._soft_break()
            self._emit(">\n")
        elif tag in _INVISIBLE:
            self._invisible += 1
        elif tag == "br":
            self._emit("\n")
        elif tag == "li":
            self._soft_break()
            self._emit("- ")
        elif tag in ("td", "th"):
            self._emit(" ")
        elif tag in _BLOCK:
            self._pre += tag == "pre"
            self._soft_break()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.cut:
            return
        if self._skip_depth:
            if tag == self._skip_tag:
                self._skip_depth -= 1
            return
        if tag in _INVISIBLE:
            self._invisible = max(0, self._invisible - 1)
        elif tag == "p" and self._line_start:
            # Outlook writes each blank line as an empty paragraph.
            self._emit("\n")
        elif tag in _BLOCK:
            self._pre -= tag == "pre" and self._pre > 0
            self._soft_break()

    def handle_data(self, data: str) -> None:
        if self.cut or self._skip_depth or self._invisible:
            return
        data = data.replace("\xa0", " ")
        if not self._pre:
            data = _collapse(data)
            if self._line_start:
                data = data.lstrip()
        if data:
            self._emit(data)


def _collapse(data: str) -> str:
    # Keep one space at either edge so that words in neighbouring inline tags stay apart.
    inner = " ".join(data.split())
    if not inner:
        return " " if data else ""
    lead = " " if data[:1].isspace() else ""
    trail = " " if data[-1:].isspace() else ""
    return f"{lead}{inner}{trail}"


def html_to_text(html: str) -> str:
    """The readable text of an HTML body: blocks become lines, quoted history is dropped."""
    parser = _HtmlText()
    # html.parser is forgiving, but has raised on odd markup before: keep what was read.
    with contextlib.suppress(Exception):
        parser.feed(html)
        parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
