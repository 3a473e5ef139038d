"""The ordered steps that turn one spooled request into a reply, and what they can conclude.

A :class:`Job` carries one spooled message through :data:`PIPELINE`, read top to bottom:
route it to an account, skip it if its reply already left, read it, drop duplicates, ask
the guards, find the customer, spend the rate limits, gather the invoices in scope, read
what the business set for the client (payment instructions, language), build the
statement pack, mint the permalink, write the reply and hand it to the relay. Each step either
lets the job go on (``None``) or ends it with an :data:`Outcome`; the worker turns the
outcome into a spool state and an activity record.

KashFlow errors are not caught here: :func:`kashflow_outcome` maps them once, for every step.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import date
from email.message import EmailMessage

from bot.compose import compose_reply, compose_unknown_sender, reply_subject
from bot.guards import GuardContext, first_stop, refers_to_us, thread_root
from bot.intent import Intent, read_intent
from bot.language import NAMES
from bot.mailparse import Request
from bot.reading import MailReader, TooCostly, too_complex
from kashflow.errors import BadDocument, KashFlowError, NotFound
from kashflow.models import CompanyDetails, Credentials, Customer, address_key
from permalink.accounts import BotSettings
from permalink.addresses import NotAnAddress, mailbox, usable
from permalink.business import ClientSettings
from permalink.core import Core, RelayNotReady
from permalink.gateway import KashFlowAccount
from permalink.keyring import SecretUnreadable
from permalink.mail import sender
from permalink.presentation import customer_label, document_filename
from permalink.relay import PermanentFailure, TemporaryFailure
from permalink.scopes import DefaultScope, Scope, Statement
from permalink.spool import ReplyRecord, SpooledMessage
from permalink.trouble import words_for

log = logging.getLogger(__name__)

RATE_WINDOW_S = 3600.0
#: The hard cap on replies in one thread, whoever writes in it, and its window.
MAX_REPLIES_PER_THREAD = 3
THREAD_WINDOW_S = 86400.0


# -- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replied:
    """The reply left through the relay (or had left before a restart)."""

    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Deliberately not answered; ``rule`` says why (a guard, a limit, an unknown sender)."""

    rule: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Cannot be answered as things stand: the message is parked with ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Deferred:
    """Something outside us is down (the relay, KashFlow): try again later."""

    reason: str


Outcome = Replied | Ignored | Failed | Deferred


# -- what the steps share ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """The process-wide things every job uses: the core, and the bot's own policy."""

    core: Core
    #: The receiving MTA's authserv-id: when set, only mail it authenticated is answered.
    trusted_authserv_id: str | None = None
    #: Parses messages off the event loop, within a CPU budget.
    reader: MailReader = field(default_factory=MailReader)

    @property
    def mail_domain(self) -> str:
        return self.core.config.mail_domain

    def clock(self) -> float:
        return self.core.clock()


@dataclass(slots=True)
class Job:
    """One message on its way through the pipeline; steps fill it in as they go."""

    message: SpooledMessage
    #: The worker holding the message's lease (state changes are fenced by it).
    owner: str = ""
    account: str = ""
    settings: BotSettings | None = None
    credentials: Credentials | None = field(default=None, repr=False)
    request: Request = field(default_factory=Request)
    sent_before: ReplyRecord | None = None
    customer: Customer | None = None
    recipient: str = ""
    intent: Intent | None = None
    statement: Statement | None = None
    #: What the business set for the client: payment instructions, languages.
    client: ClientSettings | None = None
    company: CompanyDetails | None = None
    pdf: bytes | None = None
    pdf_note: str = ""
    link_url: str = field(default="", repr=False)
    reply: EmailMessage | None = None

    @property
    def subject(self) -> str:
        """Who the activity record is about: the customer if known, else the sender."""
        if self.customer is not None:
            return customer_label(self.customer.name, self.customer.code)
        return self.request.from_address or self.message.mail_from or "unknown sender"

    @property
    def bot(self) -> BotSettings:
        assert self.settings is not None, "route runs first"
        return self.settings

    def kashflow(self, ctx: Context) -> KashFlowAccount:
        assert self.credentials is not None, "route runs first"
        return ctx.core.kashflow(self.credentials)

    @property
    def language(self) -> str:
        """The reply's language: the one the request was written in, else the client's
        setting, else the account's default."""
        assert self.client is not None, "client_settings runs first"
        asked = self.intent.language if self.intent is not None else None
        return self.client.language(asked=asked)


Step = Callable[[Context, Job], Awaitable[Outcome | None]]


# -- the steps --------------------------------------------------------------------------


async def route(ctx: Context, job: Job) -> Outcome | None:
    """The account the message was accepted for, with the bot on."""
    accounts = ctx.core.store.accounts
    account = job.message.account
    if not account:
        # Accepted before messages were filed under their account: its address decides.
        for rcpt in job.message.rcpt_tos:
            account = await accounts.account_for_address(rcpt) or ""
            if account:
                break
    if not account:
        return Failed("no account answers at this request address any more")
    job.account = account
    if not ctx.core.allows(account):
        # Spooled before the operator took the account off the list (or read by a door
        # that does not ask): refused here as it would be at RCPT now.
        return Failed("the account is not in ALLOWED_ACCOUNTS of this server")
    settings = await accounts.get(account)
    if not settings.enabled:
        return Failed("the bot is turned off for this request address")
    job.settings = settings
    try:
        job.credentials = await accounts.bot_credentials(job.account)
    except SecretUnreadable as error:
        return unreadable(error, "the bot's stored KashFlow credentials")
    if job.credentials is None:
        return Failed("the bot has no KashFlow credentials; save them on the settings page")
    return None


def unreadable(error: SecretUnreadable, what: str) -> Outcome:
    """A stored secret that does not open: wait for a key this process lacks, or park."""
    if error.reason == "unknown_key":
        # Sealed with a key this process does not hold yet: just rotated on another
        # machine, before the new key file reached this one.
        return Deferred(
            f"{what}: sealed with a server key this process does not have; copy the current "
            "key file to it, or save them again on the settings page"
        )
    return Failed(
        f"{what}: cannot be opened with the server key; save them again on the settings page"
    )


async def already_replied(ctx: Context, job: Job) -> Outcome | None:
    # A reply recorded "sent" left before a crash or a lost ``done``: never send it again.
    job.sent_before = await ctx.core.store.spool.reply_state(job.message.id)
    if job.sent_before is not None and job.sent_before.state == "sent":
        return Replied("reply had already been sent before an interruption")
    return None


async def read(ctx: Context, job: Job) -> Outcome | None:
    # Counted before anything is parsed: mail spooled before the listener refused such
    # messages, or handed over by another door, is parked here unread.
    refused = too_complex(job.message.raw)
    if refused:
        return Failed(f"message not read: {refused}")
    try:
        job.request = await ctx.reader.read(job.message.raw, job.message.mail_from)
    except TooCostly as error:
        return Failed(str(error))
    if not job.request.from_address:
        defects = ", ".join(job.request.defects[:3])
        return Ignored(f"no readable sender address ({defects})" if defects else "no sender")
    return None


async def duplicate(ctx: Context, job: Job) -> Outcome | None:
    message_id = job.request.message_id or job.message.message_id
    if await ctx.core.store.spool.seen_message_id(
        message_id, account=job.message.account, before_id=job.message.id
    ):
        return Ignored("duplicate: a message with this Message-ID was already received")
    return None


async def guards(ctx: Context, job: Job) -> Outcome | None:
    context = GuardContext(job.bot.request_address, ctx.mail_domain, ctx.trusted_authserv_id)
    reason = first_stop(job.request, context)
    return None if reason is None else Ignored(reason)


async def identify(ctx: Context, job: Job) -> Outcome | None:
    """The KashFlow customer whose Email field holds the From address."""
    try:
        job.customer = await job.kashflow(ctx).customer_by_email(job.request.lookup_address)
    except NotFound:
        if job.bot.unknown_sender == "ignore":
            return Ignored("unknown sender: no KashFlow customer has this address")
        # The neutral reply goes to the From address: it says nothing about anyone's books.
        try:
            job.recipient = mailbox(job.request.from_address).address
        except NotAnAddress as unusable:
            return Ignored(f"unknown sender whose address cannot be written to: {unusable}")
        return None
    job.recipient = address_on_file(job.customer, job.request.lookup_address)
    if not job.recipient:
        _, bad = usable(job.customer.emails)
        if bad:
            return Failed(f"the customer's email address in KashFlow is not usable: {bad[0]}")
        return Failed("the customer has no email address on file in KashFlow")
    return None


def address_on_file(customer: Customer, sender: str) -> str:
    """Where a reply goes: the on-file address matching the sender, else the first usable
    one on file (:mod:`permalink.addresses`), "" when none is.

    Never an address the message only claims (Reply-To, or From when it is not on file).
    """
    on_file, _ = usable(customer.emails)
    wanted = address_key(sender)
    for box in on_file:
        if address_key(box.address) == wanted:
            return box.address
    return on_file[0].address if on_file else ""


async def rate_limit(ctx: Context, job: Job) -> Outcome | None:
    if job.sent_before is not None:
        # The slot was spent when this reply was first being sent; it is only resent now.
        return None
    settings, now = job.bot, ctx.clock()
    who = (
        f"customer:{job.customer.code}"
        if job.customer is not None
        else f"sender:{job.request.lookup_address}"
    )
    limiter, request = ctx.core.store.limits, job.request
    # Each slot is held for this spooled message: a try that was deferred (KashFlow or the
    # relay down) or interrupted before its reply left spent it already, and must not find
    # its own earlier try counted against it.
    spent_by = f"spool:{job.message.id}"
    if refers_to_us(request, ctx.mail_domain) and not await limiter.try_acquire(
        f"{job.account}:{who}:same:{_digest(request)}",
        limit=1,
        window_s=THREAD_WINDOW_S,
        now=now,
        holder=spent_by,
    ):
        # A person rewords; a responder that does not say what it is sends the same again.
        return Ignored("repeated identical mail in reply to the bot")
    root = thread_root(request) or job.message.message_id
    if root and not await limiter.try_acquire(
        f"{job.account}:{who}:thread:{root}",
        limit=MAX_REPLIES_PER_THREAD,
        window_s=THREAD_WINDOW_S,
        now=now,
        holder=spent_by,
    ):
        return Ignored(f"rate limit: over {MAX_REPLIES_PER_THREAD} replies a day in one thread")
    # Per sender first: a sender over their own limit must not use up everyone's allowance.
    if not await limiter.try_acquire(
        f"{job.account}:{who}",
        limit=settings.per_customer_limit,
        window_s=RATE_WINDOW_S,
        now=now,
        holder=spent_by,
    ):
        return Ignored(f"rate limit: over {settings.per_customer_limit} replies an hour to them")
    if not await limiter.try_acquire(
        f"{job.account}:global",
        limit=settings.global_limit,
        window_s=RATE_WINDOW_S,
        now=now,
        holder=spent_by,
    ):
        return Ignored(f"rate limit: over {settings.global_limit} replies an hour in all")
    return None


def _digest(request: Request) -> str:
    text = " ".join(request.new_text.lower().split())
    subject = " ".join(reply_subject(request.subject).lower().split())
    return hashlib.sha256(f"{subject}\n{text}".encode()).hexdigest()[:32]


async def gather(ctx: Context, job: Job) -> Outcome | None:
    """The invoices the request asks for; invoice numbers only those that are the customer's."""
    if job.customer is None:
        job.company = await job.kashflow(ctx).company_details()
        return None
    assert job.credentials is not None
    default = job.bot.default_scope
    intent = understand(job.request, ctx.mail_domain, default)
    if intent.kind == "invoice":
        job.statement, intent = await _named_invoices(ctx, job, intent, default)
    if job.statement is None:
        job.statement = await ctx.core.statement(job.credentials, job.customer.id, intent.scope)
    job.intent = intent
    job.company = job.statement.company
    job.customer = job.statement.customer
    return None


def understand(request: Request, mail_domain: str, default: DefaultScope) -> Intent:
    """What ``request`` asks for, before KashFlow says whose the invoices named are."""
    # In a reply to the bot the subject is the bot's own: only the new text is the sender's.
    subject = "" if refers_to_us(request, mail_domain) else request.subject
    return read_intent(request.new_text, subject, default)


async def _named_invoices(
    ctx: Context, job: Job, intent: Intent, default: DefaultScope
) -> tuple[Statement | None, Intent]:
    """The named invoices that are the customer's; the rest are reported as not found.

    Someone else's invoice and a missing one get the same answer, and the link's scope
    holds only the customer's own. With none of theirs, the default scope is sent.
    """
    assert job.credentials is not None and job.customer is not None
    try:
        found = await ctx.core.statement(job.credentials, job.customer.id, intent.scope)
    except (NotFound, ValueError):
        return None, replace(intent, scope=Scope(default), not_found=intent.numbers)
    missing = tuple(n for n in intent.numbers if n not in found.numbers)
    if missing:
        scope = Scope("invoice", found.numbers)
        found = replace(found, scope=scope)
        intent = replace(intent, scope=scope, not_found=missing)
    return found, intent


async def client_settings(ctx: Context, job: Job) -> Outcome | None:
    """What the business set for this client (or, for an unknown sender, its defaults)."""
    code = job.customer.code if job.customer is not None else ""
    if code:
        job.client = await ctx.core.client_settings(job.account, code)
    else:
        job.client = ClientSettings(await ctx.core.store.business.get(job.account))
    return None


async def attach(ctx: Context, job: Job) -> Outcome | None:
    if job.statement is None or not job.statement.invoices:
        return None
    assert job.credentials is not None and job.client is not None
    try:
        pdf = await ctx.core.statement_pack(
            job.credentials,
            job.statement,
            language=job.language,
            business=job.client.business,
            today=date.fromtimestamp(ctx.clock()),
        )
    except BadDocument as error:
        log.warning("spool #%d: no PDF attached: %s", job.message.id, error.message)
        job.pdf_note = "PDF left out: KashFlow returned an unreadable document"
        return None
    if len(pdf) > job.bot.max_attachment_bytes:
        # The link does the work: it serves the same merged PDF on demand.
        job.pdf_note = f"PDF left out: {len(pdf):,} bytes is over the attachment limit"
        return None
    job.pdf = pdf
    return None


async def mint_link(ctx: Context, job: Job) -> Outcome | None:
    if job.customer is None or job.statement is None:
        return None
    assert job.credentials is not None
    minted = await ctx.core.mint(
        job.credentials, job.customer, job.statement.scope, minted_by="bot"
    )
    job.link_url = minted.url
    return None


async def write_reply(ctx: Context, job: Job) -> Outcome | None:
    settings = job.bot
    assert job.company is not None
    from_addr = sender(job.company.name, settings.sender)
    if job.customer is None:
        job.reply = compose_unknown_sender(
            request=job.request,
            to=job.recipient,
            from_addr=from_addr,
            company=job.company,
            our_domain=ctx.mail_domain,
            language=job.language,
        )
    else:
        assert job.statement is not None and job.intent is not None
        job.reply = compose_reply(
            request=job.request,
            to=job.recipient,
            from_addr=from_addr,
            company=job.company,
            customer=job.customer,
            invoices=job.statement.invoices,
            link_url=job.link_url,
            pdf=job.pdf,
            pdf_filename=document_filename(
                job.company.name,
                job.customer.code,
                job.statement.scope,
                date.fromtimestamp(ctx.clock()),
            ),
            intent=job.intent,
            # The request's language, then the client's setting, then the account's default.
            language=job.intent.language,
            our_domain=ctx.mail_domain,
            today=date.fromtimestamp(ctx.clock()),
            wording=settings.wording,
            customer_language=job.client.customer_language if job.client else None,
            default_language=job.client.business.default_language if job.client else None,
            payment=job.client.business.payment if job.client else None,
        )
    if job.sent_before is not None:
        # An earlier attempt may have reached the recipient; the same Message-ID lets
        # their mail client treat a second copy as the same message.
        del job.reply["Message-ID"]
        job.reply["Message-ID"] = job.sent_before.reply_message_id
    return None


async def deliver(ctx: Context, job: Job) -> Outcome | None:
    """Relay the reply between two durable records (see :mod:`permalink.spool`)."""
    assert job.reply is not None
    spool, spool_id = ctx.core.store.spool, job.message.id
    try:
        relay = await ctx.core.relay(job.account)
    except SecretUnreadable as error:
        return unreadable(error, "the stored relay password")
    except RelayNotReady as error:
        return Failed(f"the relay settings are incomplete: {error}")
    if job.owner:
        # The last moment to find out another worker took this message over (our lease
        # ran out): from here on, only the holder may send.
        await spool.renew(spool_id, job.owner)
    message_id = str(job.reply["Message-ID"])
    await spool.record_reply(spool_id, message_id, "sending")
    try:
        # The null envelope sender (RFC 3834 section 3.3) keeps bounces of an automatic
        # reply from coming back to the bot as new requests.
        await ctx.core.mailer.send(relay, job.reply, recipients=[job.recipient], sender="")
    except TemporaryFailure as failure:
        return Deferred(failure.reason)
    except PermanentFailure as failure:
        return Failed(failure.reason)
    # The one window left: killed after the relay's 250 and before this commit, the reply
    # is sent again on restart, with the same Message-ID. SMTP offers nothing to close it.
    await spool.record_reply(spool_id, message_id, "sent")
    return Replied(_replied_detail(job))


def _replied_detail(job: Job) -> str:
    if job.customer is None or job.statement is None:
        return f"neutral reply to unknown sender {job.recipient}"
    count = len(job.statement.invoices)
    noun = "invoice" if count == 1 else "invoices"
    parts = [f"{job.statement.scope}: {count} {noun} sent to {job.recipient}"]
    intent = job.intent
    if intent is not None:
        if not intent.understood:
            parts.append("request not understood, default scope used")
        if intent.statement:
            parts.append("a statement was asked for")
        if intent.not_found:
            numbers = ", ".join(str(n) for n in intent.not_found)
            parts.append(f"not found for them: {numbers}")
        if intent.language is not None:
            parts.append(f"written in {NAMES[intent.language]}")
    if job.pdf_note:
        parts.append(job.pdf_note)
    return "; ".join(parts)


#: The steps every message goes through, in order.
PIPELINE: tuple[Step, ...] = (
    route,
    already_replied,
    read,
    duplicate,
    guards,
    identify,
    rate_limit,
    gather,
    client_settings,
    attach,
    mint_link,
    write_reply,
    deliver,
)


async def run(ctx: Context, job: Job, steps: tuple[Step, ...] = PIPELINE) -> Outcome:
    """Take ``job`` through ``steps`` until one concludes; KashFlow errors conclude too."""
    try:
        for step in steps:
            outcome = await step(ctx, job)
            if outcome is not None:
                return outcome
    except KashFlowError as error:
        return kashflow_outcome(error)
    raise RuntimeError("the pipeline ended without an outcome")


def kashflow_outcome(error: KashFlowError) -> Outcome:
    """KashFlow being down is worth a retry; refusing the bot's credentials is not."""
    words = words_for(error, "bot")
    return Deferred(words.text) if words.temporary else Failed(words.text)


__all__ = [
    "PIPELINE",
    "Context",
    "Deferred",
    "Failed",
    "Ignored",
    "Job",
    "Outcome",
    "Replied",
    "Step",
    "address_on_file",
    "kashflow_outcome",
    "run",
    "understand",
]
