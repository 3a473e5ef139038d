"""When the bot must not reply: RFC 3834 and mail-loop rules as small named pure functions.

People are told from machines by what machines do: they mark themselves (Auto-Submitted,
X-Autoreply, X-Autorespond, Precedence: auto_reply), write out-of-office subjects, send
delivery reports, come from role mailboxes or lists. A person's reply to the bot's own
message is answered when it asks for something.

Each guard takes the parsed ``Request`` and a ``GuardContext`` and returns the reason it
stops the reply, or ``None``. ``GUARDS`` lists them in the order they are asked; the first
reason wins (``first_stop``). Rate limits need the store and live with the worker.

Reasons may end up in logs and on the settings page, so they quote header values only
shortened and on one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.intent import asks_anything
from bot.mailparse import Request
from kashflow.models import ascii_domain


@dataclass(frozen=True, slots=True)
class GuardContext:
    """What the guards know about us.

    ``request_address`` is the address the bot answers on; ``our_domain`` is the domain of
    every Message-ID the bot writes. When ``trusted_authserv_id`` is set, only mail whose
    From domain that server authenticated is answered (see ``require_auth``); the receiving
    MTA must then strip ``Authentication-Results`` headers bearing that id from inbound mail.
    """

    request_address: str
    our_domain: str
    trusted_authserv_id: str | None = None


Guard = Callable[[Request, GuardContext], str | None]


def _short(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= 60 else value[:57] + "..."


def null_reverse_path(request: Request, ctx: GuardContext) -> str | None:
    # RFC 3834 §2: never respond to a message whose envelope sender is the null path; it is
    # a bounce or another automatic notice. The Return-Path header speaks for the envelope
    # when the receiver did not hand it over.
    if request.envelope_sender == "":
        return "null reverse-path (MAIL FROM:<>)"
    if request.envelope_sender is None and request.return_path.strip() == "<>":
        return "null reverse-path (Return-Path: <>)"
    return None


def auto_submitted(request: Request, ctx: GuardContext) -> str | None:
    # RFC 3834 §5: any Auto-Submitted value but "no" marks an automatic message.
    keyword = request.auto_submitted.split(";", 1)[0].strip()
    if keyword and keyword != "no":
        return f"Auto-Submitted: {_short(keyword)}"
    return None


def bulk_precedence(request: Request, ctx: GuardContext) -> str | None:
    # Not standard, but the de facto mark of list and bulk mail and of many auto-replies.
    if request.precedence.strip() in ("bulk", "list", "junk"):
        return f"Precedence: {_short(request.precedence)}"
    return None


def mailing_list(request: Request, ctx: GuardContext) -> str | None:
    # RFC 2369/2919 headers: the message came through a list, not from a person.
    if request.list_id:
        return f"mailing list (List-Id: {_short(request.list_id)})"
    if request.list_unsubscribe:
        return "mailing list (List-Unsubscribe present)"
    return None


_ROLE_LOCALPARTS = frozenset(
    {
        "mailer-daemon",
        "postmaster",
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
        "listserv",
        "majordomo",
    }
)


def _role_localpart(address: str) -> str | None:
    local = address.rpartition("@")[0].lower().strip('"')
    # RFC 3834 §2 also names owner-* and *-request list addresses.
    if local in _ROLE_LOCALPARTS or local.startswith("owner-") or local.endswith("-request"):
        return local
    return None


def role_sender(request: Request, ctx: GuardContext) -> str | None:
    for address in (request.from_address, request.envelope_sender or ""):
        local = _role_localpart(address)
        if local:
            return f"sender is an automatic mailbox ({_short(local)})"
    return None


def our_own_address(request: Request, ctx: GuardContext) -> str | None:
    ours = ctx.request_address.strip().lower()
    senders = {request.lookup_address, (request.envelope_sender or "").lower()}
    if ours and ours in senders:
        return "sender is the bot's own request address"
    return None


def _is_ours(message_id: str, domain: str) -> bool:
    return bool(domain) and message_id.strip().strip("<>").lower().endswith("@" + domain.lower())


def refers_to_us(request: Request, our_domain: str) -> bool:
    """Whether the message answers one of the bot's messages (RFC 5322 threading)."""
    return any(_is_ours(mid, our_domain) for mid in (request.in_reply_to, *request.references))


def thread_root(request: Request) -> str:
    """The Message-ID that started the thread: the first of References, else its own."""
    return (request.references or (request.in_reply_to or request.message_id,))[0]


def our_own_message(request: Request, ctx: GuardContext) -> str | None:
    # One of our own replies coming back (a forwarding rule, a relay bouncing it whole).
    if _is_ours(request.message_id, ctx.our_domain):
        return "loop: the message is one of the bot's own"
    return None


def reply_without_request(request: Request, ctx: GuardContext) -> str | None:
    # A person's reply to the bot is answered when it asks for something ("Thanks! Could
    # you send just the unpaid ones?"); a thank-you, or a responder that does not say what
    # it is, asks for nothing and gets nothing, so no loop can start. The subject is the
    # bot's own there, so only the new text counts. Per-thread and repeat limits (see
    # bot/pipeline.py, ``rate_limit``) catch the responders whose text does ask.
    if refers_to_us(request, ctx.our_domain) and not asks_anything(request.new_text):
        return "a reply to the bot's message that asks for nothing"
    return None


def autoreply_header(request: Request, ctx: GuardContext) -> str | None:
    # Older responders (Exchange, cPanel, vacation scripts) mark themselves only this way.
    for name, value in (
        ("X-Autoreply", request.x_autoreply),
        ("X-Autorespond", request.x_autorespond),
    ):
        if value and value.strip().lower() not in ("no", "false", "0"):
            return f"{name}: {_short(value)}"
    if request.precedence.strip() in ("auto_reply", "auto-reply", "autoreply"):
        return f"Precedence: {_short(request.precedence)}"
    for header in request.other_auto_headers:
        return _short(header)
    return None


# Out-of-office and automatic-reply subjects, as the common clients and servers write them
# in the supported languages (each at the start, or after the "Re:" of the thread).
_OUT_OF_OFFICE = re.compile(
    r"^(?:(?:re|aw|sv|antw|vs|ynt)\s*:\s*)*(?:"
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autoreply"
    r"|away from (?:the )?office|on (?:holiday|vacation|annual leave)|annual leave|vacation reply"
    r"|ateb awtomatig|ymateb awtomatig|allan o'r swyddfa|i ffwrdd o'r swyddfa|ar wyliau"
    r"|réponse automatique|absent(?:e)? du bureau|absence du bureau|message d'absence|en congés?"
    r"|automatische antwort|abwesenheitsnotiz|abwesenheit|nicht im büro|außer haus|im urlaub"
    r"|respuesta automática|fuera de la oficina|ausente|de vacaciones|mensaje de ausencia"
    r"|automatisch antwoord|afwezig|niet aanwezig|buiten kantoor|afwezigheidsbericht"
    r"|met vakantie)\b",
    re.IGNORECASE,
)


def out_of_office_subject(request: Request, ctx: GuardContext) -> str | None:
    # Responders that set no header still say what they are in the subject.
    if _OUT_OF_OFFICE.search(request.subject.strip()):
        return f"out-of-office subject ({_short(request.subject)})"
    return None


_BOUNCE_SUBJECT = re.compile(
    r"^(?:undeliverable|undelivered mail|delivery status notification|delivery failure"
    r"|mail delivery failed|returned mail|failure notice|delivery has failed"
    r"|unzustellbar|nicht zustellbar|non remis|échec de la remise|no se puede entregar"
    r"|onbestelbaar|niet bezorgd|methodd danfon)\b",
    re.IGNORECASE,
)


def delivery_report(request: Request, ctx: GuardContext) -> str | None:
    # RFC 6522: bounces and read receipts travel as multipart/report, some wrapped in
    # another multipart; servers that send neither still say so in the subject.
    if request.content_type == "multipart/report":
        return "delivery or disposition report (multipart/report)"
    for kind in ("message/delivery-status", "message/disposition-notification"):
        if kind in request.part_types:
            return f"delivery or disposition report ({kind})"
    if _BOUNCE_SUBJECT.search(request.subject.strip()):
        return f"delivery report subject ({_short(request.subject)})"
    return None


def require_auth(request: Request, ctx: GuardContext) -> str | None:
    """When a trusted authserv-id is configured, ask that the From domain was authenticated.

    RFC 8601: only results from our own receiving server count; a pass is accepted for
    DKIM whose ``header.d`` is aligned with the From domain, SPF whose ``smtp.mailfrom`` is,
    or DMARC for that From domain.
    """
    trusted = (ctx.trusted_authserv_id or "").strip().lower()
    if not trusted:
        return None
    # Compared in ASCII: DKIM's d= is written in A-labels (RFC 8616), a From in U-labels.
    from_domain = ascii_domain(request.lookup_address.rpartition("@")[2])
    if not from_domain:
        return "unauthenticated: no From domain"
    for header in request.authentication_results:
        authserv_id, results = _auth_results(header)
        if authserv_id != trusted:
            continue
        for method, result, props in results:
            if result != "pass":
                continue
            if method == "dkim" and _aligned(props.get("header.d", ""), from_domain):
                return None
            if method == "spf" and _aligned(props.get("smtp.mailfrom", ""), from_domain):
                return None
            if method == "dmarc" and ascii_domain(props.get("header.from", "")) == from_domain:
                return None
    return f"unauthenticated: no aligned pass from {_short(trusted)}"


def _aligned(identity: str, from_domain: str) -> bool:
    # Relaxed alignment without a public-suffix list: the same domain, or one a parent of the
    # other (only whoever controls the parent can sign for it or its children).
    domain = ascii_domain(identity.rpartition("@")[2].strip().rstrip("."))
    if not domain or "." not in domain:
        return False
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


def _without_comments(value: str) -> str:
    out: list[str] = []
    depth = 0
    for char in value:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    return "".join(out)


def _auth_results(header: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """``(authserv-id, [(method, result, {ptype.property: value})])`` of one header."""
    parts = _without_comments(header).split(";")
    head = parts[0].split()
    authserv_id = head[0].lower() if head else ""
    results: list[tuple[str, str, dict[str, str]]] = []
    for resinfo in parts[1:]:
        tokens = resinfo.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        method = method.split("/", 1)[0]
        props: dict[str, str] = {}
        for token in tokens[1:]:
            key, eq, value = token.partition("=")
            if eq:
                props[key.lower()] = value.strip('"').lower()
        results.append((method.lower(), result.lower(), props))
    return authserv_id, results


#: Asked top to bottom; cheap header checks first, the authentication check last.
GUARDS: tuple[Guard, ...] = (
    null_reverse_path,
    delivery_report,
    auto_submitted,
    autoreply_header,
    out_of_office_subject,
    bulk_precedence,
    mailing_list,
    role_sender,
    our_own_address,
    our_own_message,
    reply_without_request,
    require_auth,
)


def first_stop(request: Request, ctx: GuardContext) -> str | None:
    """The reason the first guard to object gives, or ``None`` when a reply may go out."""
    for guard in GUARDS:
        reason = guard(request, ctx)
        if reason is not None:
            return reason
    return None
