"""One IMAP conversation, typed: connect, sign in, read a folder, take and mark messages.

A thin layer over ``aioimaplib`` (which speaks the protocol on the running loop) that
turns its responses into plain values and every way the server or the network can fail
into one :class:`MailboxError` whose ``str()`` is a sentence for the settings page (never
the password). It adds what the library leaves out: STARTTLS (RFC 3501 section 6.2.1),
``UIDVALIDITY`` from SELECT, message bodies from FETCH, MOVE with a COPY fallback, and a
wait for new mail that uses IDLE (RFC 2177) when the server has it.

``aioimaplib`` logs every byte it receives at DEBUG, message bodies included (a client's
quoted reply can hold a permalink), so :func:`open_session` keeps its logger at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from aioimaplib import aioimaplib

log = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]

#: The keyword a handled message is flagged with when it stays in its folder.
HANDLED: Final = "$KashFlowPermalink"
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_PERMANENTFLAGS = re.compile(rb"\[PERMANENTFLAGS \(([^)]*)\)\]")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_EXISTS = re.compile(rb"^\d+ EXISTS")


class MailboxError(Exception):
    """The mailbox could not be read or changed; ``str()`` says why, for people."""


@dataclass(frozen=True, slots=True)
class Server:
    """Where and how to sign in. The password never shows in a repr."""

    host: str
    port: int
    security: Security
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0
    #: A PEM bundle to trust instead of the system's (a private CA, or the demo's).
    ca_file: str | None = None

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@dataclass(frozen=True, slots=True)
class Folder:
    """A selected folder: the UIDVALIDITY its UIDs belong to, and whether it keeps
    keywords of our own (``\\*`` in PERMANENTFLAGS: Microsoft 365 does not)."""

    name: str
    uidvalidity: int
    keywords: bool


def imap_date(day: date) -> str:
    """``3-Dec-2026``: IMAP's date (RFC 3501 section 9, date-text), never the locale's."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def _quoted(name: str) -> str:
    return str(aioimaplib.quoted(name))


def _text(response: Any) -> str:
    lines = [line for line in response.lines if isinstance(line, bytes)]
    last = lines[-1].decode("utf-8", "replace") if lines else ""
    return " ".join(last.split())[:200] or str(response.result)


class Session:
    """A signed-in IMAP connection (use :func:`open_session`)."""

    def __init__(self, client: aioimaplib.IMAP4, server: Server, lost: asyncio.Event) -> None:
        self._client = client
        self._server = server
        self._lost = lost
        self.folder: Folder | None = None

    @property
    def idles(self) -> bool:
        return bool(self._client.has_capability("IDLE"))

    async def _ok(self, what: str, call: Any) -> Any:
        try:
            response = await call
        except (aioimaplib.AioImapException, OSError, TimeoutError) as error:
            raise MailboxError(f"{what}: {_reason(error)}") from None
        if response.result != "OK":
            raise MailboxError(f"{what}: the server said {_text(response)!r}")
        return response

    async def select(self, name: str) -> Folder:
        response = await self._ok(
            f"could not open the folder {name!r}", self._client.select(_quoted(name))
        )
        found = b" ".join(line for line in response.lines if isinstance(line, bytes))
        validity = _UIDVALIDITY.search(found)
        if validity is None:
            raise MailboxError(f"the server gave no UIDVALIDITY for the folder {name!r}")
        flags = _PERMANENTFLAGS.search(found)
        keywords = flags is not None and b"\\*" in flags.group(1).split()
        self.folder = Folder(name, int(validity.group(1)), keywords)
        return self.folder

    async def create(self, name: str) -> None:
        """Make a folder if it is missing (an existing one is left as it is)."""
        with contextlib.suppress(MailboxError):
            await self._ok("could not create a folder", self._client.create(_quoted(name)))

    async def search(self, *criteria: str) -> list[int]:
        """The UIDs matching ``criteria`` in the selected folder, in ascending order."""
        response = await self._ok(
            "could not search the folder", self._client.uid_search(*criteria, charset=None)
        )
        uids: set[int] = set()
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                text = line.removeprefix(b"SEARCH").split()
                uids.update(int(word) for word in text if word.isdigit())
        return sorted(uids)

    async def size(self, uid: int) -> int | None:
        """The message's size in bytes, or None if it is gone."""
        response = await self._ok(
            "could not read a message", self._client.uid("FETCH", str(uid), "(RFC822.SIZE)")
        )
        for line in response.lines:
            if isinstance(line, bytes) and (match := _FETCH_SIZE.search(line)):
                return int(match.group(1))
        return None

    async def fetch(self, uid: int) -> bytes | None:
        """The message exactly as stored, without marking it read; None if it is gone."""
        response = await self._ok(
            "could not read a message", self._client.uid("FETCH", str(uid), "(BODY.PEEK[])")
        )
        for line in response.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def flag(self, uid: int, keyword: bool) -> None:
        """Mark a message handled where it is: seen, and with our keyword if kept."""
        flags = f"(\\Seen {HANDLED})" if keyword else "(\\Seen)"
        await self._ok(
            "could not flag a handled message",
            self._client.uid("STORE", str(uid), "+FLAGS.SILENT", flags),
        )

    async def move(self, uid: int, folder: str) -> None:
        """Move a message to ``folder`` (RFC 6851 MOVE, else COPY, delete, expunge)."""
        target = _quoted(folder)
        if self._client.has_capability("MOVE"):
            await self._ok(
                f"could not move a message to {folder!r}",
                self._client.uid("MOVE", str(uid), target),
            )
            return
        await self._ok(
            f"could not copy a message to {folder!r}", self._client.uid("COPY", str(uid), target)
        )
        await self._ok(
            "could not remove a moved message",
            self._client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)"),
        )
        if self._client.has_capability("UIDPLUS"):
            await self._ok("could not expunge", self._client.uid("EXPUNGE", str(uid)))
        else:
            await self._ok("could not expunge", self._client.expunge())

    async def wait_for_mail(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the server to announce new mail (IDLE);
        True if it did. Without IDLE it just waits: the caller looks again anyway."""
        if not self.idles:
            await self._wait_lost(timeout)
            return False
        try:
            idle = await self._client.idle_start(timeout=timeout)
            pushed = asyncio.ensure_future(self._client.wait_server_push(timeout=timeout + 5))
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({pushed, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
            if self._lost.is_set():
                pushed.cancel()
                raise MailboxError("the connection to the mail server was lost")
            lines = pushed.result()
            self._client.idle_done()
            async with asyncio.timeout(self._server.timeout):
                await idle
        except (aioimaplib.AioImapException, OSError, TimeoutError) as error:
            raise MailboxError(f"waiting for new mail failed: {_reason(error)}") from None
        return any(isinstance(line, bytes) and _EXISTS.match(line) for line in lines)

    async def _wait_lost(self, timeout: float) -> None:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._lost.wait()
        if self._lost.is_set():
            raise MailboxError("the connection to the mail server was lost")

    async def close(self) -> None:
        """Sign out (politely if the connection still works)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(min(2.0, self._server.timeout)):
                if self._client.has_pending_idle():
                    # Stopped while waiting for mail: end the IDLE, or LOGOUT waits behind it.
                    self._client.idle_done()
                if not self._lost.is_set():
                    await self._client.logout()
        transport = self._client.protocol.transport
        if transport is not None:
            transport.close()


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return "the TLS handshake failed"
    if isinstance(error, ConnectionRefusedError):
        return "the server refused the connection"
    if isinstance(error, TimeoutError | aioimaplib.CommandTimeout):
        return "the server did not answer in time"
    if isinstance(error, OSError):
        return f"could not reach the server ({error.strerror or type(error).__name__})"
    return str(error)[:200] or type(error).__name__


async def open_session(server: Server) -> Session:
    """Connect, secure the connection as configured, and sign in."""
    # Bodies in DEBUG lines could carry a permalink a client quoted back.
    library_log = logging.getLogger(aioimaplib.__name__)
    if library_log.getEffectiveLevel() < logging.INFO:
        library_log.setLevel(logging.INFO)
    lost = asyncio.Event()
    client = aioimaplib.IMAP4(
        host=server.host,
        port=server.port,
        timeout=server.timeout,
        conn_lost_cb=lambda _exc: lost.set(),
        ssl_context=server.tls_context() if server.security == "ssl" else None,
    )
    session = Session(client, server, lost)
    try:
        try:
            await client.wait_hello_from_server()
        except (aioimaplib.AioImapException, OSError, TimeoutError) as error:
            raise MailboxError(
                f"could not connect to {server.host}:{server.port}: {_reason(error)}"
            ) from None
        if server.security == "starttls":
            await _starttls(client, server)
        await session._ok(
            "could not sign in", client.login(_quoted(server.username), server.password)
        )
    except BaseException:
        await session.close()
        raise
    return session


async def _starttls(client: aioimaplib.IMAP4, server: Server) -> None:
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise MailboxError("the server does not offer STARTTLS: choose SSL/TLS")
    try:
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        async with asyncio.timeout(server.timeout):
            response = await protocol.execute(command)
            if response.result != "OK":
                raise MailboxError(f"STARTTLS was refused: {_text(response)!r}")
            loop = asyncio.get_running_loop()
            protocol.transport = await loop.start_tls(
                protocol.transport, protocol, server.tls_context(), server_hostname=server.host
            )
            # RFC 3501 section 6.2.1: what the server said before TLS no longer counts.
            await protocol.capability()
    except MailboxError:
        raise
    except (aioimaplib.AioImapException, OSError, TimeoutError) as error:
        raise MailboxError(f"STARTTLS failed: {_reason(error)}") from None


__all__ = [
    "HANDLED",
    "Folder",
    "MailboxError",
    "Security",
    "Server",
    "Session",
    "imap_date",
    "open_session",
]
