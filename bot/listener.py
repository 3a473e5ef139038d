"""The bot's SMTP/LMTP listener: accept requests for the request address, spool, answer.

The listener does the cheap checks in the SMTP dialogue (recipient, recipient count,
command length, message size, STARTTLS policy), writes the raw message to the durable
spool, and only then answers ``250``. Everything slow happens later in the worker, which
the listener wakes after each accepted message.

The aiosmtpd protocol runs on the service's own event loop through
``loop.create_server`` (:class:`SMTPServer`), not in aiosmtpd's ``Controller`` thread,
so the handler can await the spool directly. That loop is the web door's too, so DATA is
read through :class:`CountingReader`: it counts MIME boundaries as the lines arrive
(:class:`bot.reading.PartCounter`), hands the loop back every few hundred lines, and ends
the session with ``552`` the moment a message passes a limit, instead of receiving the
rest of a 100 000-part message line by line first.

aiosmtpd logs each command line at INFO and each DATA line and AUTH exchange at DEBUG on
the ``mail.log`` logger; :class:`SMTPServer` drops that logger's DEBUG records, whatever
level it is set to, so message bodies (which hold permalinks, in the bot's replies and in
clients' answers quoting them) and passwords never reach a log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from email.policy import compat32
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from bot.reading import PartCounter, too_complex
from permalink.db import StoreFull
from permalink.spool import Spool

log = logging.getLogger(__name__)

Accepts = Callable[[str], str | Awaitable[str | None] | None]
"""The account an envelope recipient is the request address of, or None to refuse it.

It may be a coroutine function, so the answer can follow settings changed at run time."""

Wake = Callable[[], None]
"""Called after a message is spooled, e.g. ``asyncio.Event().set``."""

TEMPORARY_FAILURE = "451 4.3.0 Requested action aborted: local error, please try again later"
DISK_FULL = "452 4.3.1 Insufficient system storage"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
NO_SUCH_USER = "550 5.1.1 No such user here; this server only accepts invoice requests"
TOO_COMPLEX = "552 5.3.4 Message refused: {reason}"

IDENT = "KashFlow Permalink"
_MAX_MESSAGE_ID = 998  # RFC 5322 line limit: longer is not a real Message-ID
#: DATA lines read between two turns of the event loop (a few hundred microseconds).
YIELD_EVERY_LINES = 200


class _NoMailContent(logging.Filter):
    """Lets through aiosmtpd's records at INFO and above: commands and their answers. Its
    DEBUG records carry every line of every message and the lines of an AUTH exchange."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_NO_MAIL_CONTENT = _NoMailContent()


def _keep_mail_content_out_of_logs() -> None:
    # A filter on the logger holds whatever level an operator sets later (a level raised
    # at start-up would not); set once, for every server in the process.
    mail_log = logging.getLogger("mail.log")
    if _NO_MAIL_CONTENT not in mail_log.filters:
        mail_log.addFilter(_NO_MAIL_CONTENT)


def accept_addresses(addresses: Iterable[str], account: str = "") -> Accepts:
    """An :data:`Accepts` for a fixed set of addresses of one account, compared
    case-insensitively."""
    wanted = frozenset(address.strip().casefold() for address in addresses)
    return lambda address: account if address.casefold() in wanted else None


def server_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side context for STARTTLS from a PEM certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def header_message_id(raw: bytes) -> str:
    """The Message-ID header of a raw message, unfolded, or ``""`` when absent or odd."""
    head, _, _ = raw.partition(b"\r\n\r\n")
    # Decoding first keeps RFC 6532 (UTF-8) headers readable and stray 8-bit bytes harmless;
    # compat32 then keeps the value as sent, where policy.default would reinterpret it.
    text = head.decode("utf-8", errors="replace")
    value = HeaderParser(policy=compat32).parsestr(text + "\r\n\r\n").get("Message-ID")
    if not isinstance(value, str):
        return ""
    unfolded = " ".join(value.split())
    return unfolded if len(unfolded) <= _MAX_MESSAGE_ID else ""


def _storable(text: str) -> str:
    # aiosmtpd decodes SMTPUTF8 arguments with surrogateescape; SQLite text must be UTF-8.
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def format_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


class RequestHandler:
    """aiosmtpd handler: only the request addresses, spooled before ``250``."""

    def __init__(
        self,
        spool: Spool,
        accepts: Accepts,
        *,
        max_recipients: int = 10,
        lmtp: bool = False,
        wake: Wake | None = None,
    ) -> None:
        if max_recipients < 1:
            raise ValueError("max_recipients must be at least 1")
        self._spool = spool
        self._accepts = accepts
        self._max_recipients = max_recipients
        self._lmtp = lmtp
        self._wake = wake
        # The account each accepted recipient belongs to, per envelope (per transaction).
        self._accounts: WeakKeyDictionary[Envelope, dict[str, str]] = WeakKeyDictionary()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        peer = format_peer(session.peer)
        found = self._accepts(address)
        account = await found if inspect.isawaitable(found) else found
        if account is None:
            # Refusing here is what makes this server never relay.
            log.info("refused recipient %r from %s", address, peer)
            return NO_SUCH_USER
        if any(address.casefold() == known.casefold() for known in envelope.rcpt_tos):
            return "250 2.1.5 OK"
        if len(envelope.rcpt_tos) >= self._max_recipients:
            log.info("too many recipients from %s", peer)
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        # The message is filed under the account its address belongs to *now*, when it
        # is accepted: a later change of address cannot route it to someone else.
        self._accounts.setdefault(envelope, {})[address.casefold()] = account
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = format_peer(session.peer)
        raw = envelope.original_content or b""
        # One pass at C speed, before anything parses it: a message of 100 000 tiny
        # parts would otherwise cost the parser many seconds later on.
        refused = too_complex(raw)
        if refused:
            log.info("refused a message from %s (%d bytes): %s", peer, len(raw), refused)
            return self._per_recipient(TOO_COMPLEX.format(reason=refused), envelope)
        message_id = header_message_id(raw)
        chosen = self._accounts.pop(envelope, {})
        by_account: dict[str, list[str]] = {}
        for rcpt in envelope.rcpt_tos:
            by_account.setdefault(chosen.get(rcpt.casefold(), ""), []).append(rcpt)
        spool_ids: list[int] = []
        try:
            # One row per account the message is for: each answers its own clients.
            for account, rcpts in by_account.items():
                spool_ids.append(
                    await self._spool.enqueue(
                        peer=peer,
                        mail_from=_storable(envelope.mail_from or ""),
                        rcpt_tos=[_storable(rcpt) for rcpt in rcpts],
                        raw=raw,
                        message_id=message_id,
                        account=account,
                    )
                )
        except StoreFull:
            log.error("disk full: deferred message %s from %s", message_id or "-", peer)
            return self._per_recipient(DISK_FULL, envelope)
        except Exception:
            log.exception("could not spool message %s from %s", message_id or "-", peer)
            return self._per_recipient(TEMPORARY_FAILURE, envelope)
        spool_id = spool_ids[0]
        # At DEBUG: the worker's line, when the message is settled, is the one per message.
        log.debug(
            "queued #%d message %s from %s (%d bytes)", spool_id, message_id or "-", peer, len(raw)
        )
        if self._wake is not None:
            try:
                self._wake()
            except Exception:
                # The message is safe on disk; the worker will find it on its next pass.
                log.exception("could not wake the worker for #%d", spool_id)
        return self._per_recipient(f"250 2.0.0 Queued as {spool_id}", envelope)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default is a permanent 500, which would make senders give up on mail
        # that a retry would deliver.
        if isinstance(error, TLSSetupException | ConnectionError):
            # A client that fails its TLS handshake or hangs up is not our fault.
            log.warning("SMTP session ended: %s", type(error).__name__)
        else:
            log.error("SMTP session error: %s", type(error).__name__, exc_info=error)
        return TEMPORARY_FAILURE

    def _per_recipient(self, status: str, envelope: Envelope) -> str:
        # LMTP (RFC 2033 section 4.2) answers DATA once per accepted recipient.
        if not self._lmtp:
            return status
        return "\r\n".join(status for _ in envelope.rcpt_tos)


class MessageRefused(Exception):
    """A message still arriving passed a MIME limit; ``str()`` says which."""


class CountingReader:
    """The stream aiosmtpd's DATA loop reads its lines from, for one message.

    Every line is counted as it goes by (:class:`bot.reading.PartCounter`); past a limit
    the read raises :class:`MessageRefused`, so nothing more of the message is read. And
    every :data:`YIELD_EVERY_LINES` lines the event loop gets a turn: aiosmtpd reads a
    line without waiting whenever one is buffered, and a socket read holds thousands.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._count = PartCounter()
        self._lines = 0

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        return await self._seen(await self._reader.readuntil(separator))

    async def read(self, n: int = -1) -> bytes:
        # aiosmtpd's way past a line longer than the stream's limit.
        return await self._seen(await self._reader.read(n))

    async def _seen(self, data: bytes) -> bytes:
        refused = self._count.feed(data)
        if refused:
            raise MessageRefused(refused)
        self._lines += 1
        if self._lines % YIELD_EVERY_LINES == 0:
            await asyncio.sleep(0)
        return data


async def _read_data(protocol: Any, arg: str, read: Callable[[str], Awaitable[None]]) -> None:
    """aiosmtpd's DATA (``read``), reading through a :class:`CountingReader`.

    A message refused while it arrives is answered ``552`` at once (once per recipient
    under LMTP, RFC 2033 section 4.2) and the session is closed: what the client is still
    sending could not be told from commands, and RFC 5321 section 7.8 lets a server under
    attack close the connection after a 5yz reply rather than read on. The parts counted
    are already past any real request's.
    """
    # aiosmtpd reads DATA from its protocol's StreamReader, ``_reader``, and offers no
    # hook on the way; for this one command it reads through the counting one instead.
    plain = protocol._reader
    protocol._reader = CountingReader(plain)
    try:
        await read(arg)
    except MessageRefused as refused:
        envelope = protocol.envelope
        log.info(
            "refused a message from %s while receiving it: %s",
            format_peer(protocol.session.peer),
            refused,
        )
        status = TOO_COMPLEX.format(reason=refused)
        replies = len(envelope.rcpt_tos) if isinstance(protocol, LMTP) else 1
        await protocol.push("\r\n".join(status for _ in range(max(1, replies))))
        if protocol.transport is not None:
            protocol.transport.close()
        # The session ends here, as after QUIT; raised rather than requested, so that not
        # one more line of the message, already buffered, is read as a command.
        raise asyncio.CancelledError from None
    finally:
        protocol._reader = plain


class CountingSMTP(SMTP):
    """aiosmtpd's SMTP with DATA read through :func:`_read_data`."""

    async def smtp_DATA(self, arg: str) -> None:
        await _read_data(self, arg, super().smtp_DATA)


class CountingLMTP(LMTP):
    """aiosmtpd's LMTP with DATA read through :func:`_read_data`."""

    async def smtp_DATA(self, arg: str) -> None:
        await _read_data(self, arg, super().smtp_DATA)


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    lmtp: bool = False
    hostname: str | None = None
    max_message_size: int = 10 * 1024 * 1024
    max_command_length: int = 512
    max_recipients: int = 10
    timeout: float = 300.0
    command_call_limit: int | None = None
    tls_context: ssl.SSLContext | None = None
    require_starttls: bool = False
    #: Let several bot processes listen on one port (SO_REUSEPORT); the kernel spreads
    #: connections over them, and stops sending any to a process that died.
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if self.require_starttls and self.tls_context is None:
            raise ValueError("require_starttls needs a TLS certificate and key")
        if self.max_command_length < 512:
            # RFC 5321 section 4.5.3.1.4: a server must accept command lines of 512 octets.
            raise ValueError("max_command_length must be at least 512")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")


def make_protocol(handler: object, settings: ListenerSettings) -> SMTP:
    """One aiosmtpd protocol instance for one incoming connection."""
    cls = CountingLMTP if settings.lmtp else CountingSMTP
    protocol = cls(
        handler,
        data_size_limit=settings.max_message_size,
        enable_SMTPUTF8=True,
        decode_data=False,
        hostname=settings.hostname,
        ident=IDENT,
        timeout=settings.timeout,
        tls_context=settings.tls_context,
        require_starttls=settings.require_starttls,
        auth_require_tls=True,
        command_call_limit=settings.command_call_limit,
        loop=asyncio.get_running_loop(),
    )
    # aiosmtpd measures a command line without its CRLF; the setting, as RFC 5321 section
    # 4.5.3.1.4 counts it, with: 512 means 510 octets before the CRLF.
    limit = settings.max_command_length - len(b"\r\n")
    protocol.command_size_limit = limit
    # aiosmtpd keeps per-command limits in one class-level dict shared by every
    # connection (and grows MAIL's on each EHLO); a per-connection dict keeps the
    # configured limit exact and connections independent.
    protocol.command_size_limits = defaultdict(lambda: limit)
    return protocol


class SMTPServer:
    """An aiosmtpd protocol served on the running loop, with a clean shutdown."""

    def __init__(
        self,
        protocol_factory: Callable[[], SMTP],
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
    ) -> None:
        self._factory = protocol_factory
        self.host = host
        self._port = port
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._connections: WeakSet[SMTP] = WeakSet()

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        return self._port

    @property
    def serving(self) -> bool:
        return self._server is not None

    def _connection(self) -> SMTP:
        protocol = self._factory()
        self._connections.add(protocol)
        return protocol

    async def start(self) -> None:
        if self._server is not None:
            return
        _keep_mail_content_out_of_logs()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection, self.host, self._port, reuse_port=self._reuse_port or None
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop open sessions (their mail was not yet acknowledged)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        await server.wait_closed()

    async def __aenter__(self) -> SMTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def create_listener(
    spool: Spool,
    accepts: Accepts,
    settings: ListenerSettings,
    *,
    wake: Wake | None = None,
) -> SMTPServer:
    """The bot's listener, ready to ``await start()`` (or ``async with``)."""
    handler = RequestHandler(
        spool,
        accepts,
        max_recipients=settings.max_recipients,
        lmtp=settings.lmtp,
        wake=wake,
    )
    return SMTPServer(
        lambda: make_protocol(handler, settings),
        settings.host,
        settings.port,
        reuse_port=settings.reuse_port,
    )


__all__ = [
    "YIELD_EVERY_LINES",
    "Accepts",
    "CountingLMTP",
    "CountingReader",
    "CountingSMTP",
    "ListenerSettings",
    "MessageRefused",
    "RequestHandler",
    "SMTPServer",
    "Wake",
    "accept_addresses",
    "create_listener",
    "format_peer",
    "header_message_id",
    "make_protocol",
    "server_tls_context",
]
