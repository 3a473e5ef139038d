"""The capturing SMTP server: the stand-in relay of the demo and the tests.

It listens on loopback (on the running loop), accepts any message, and writes each one as
an ``.eml`` file into an outbox folder, so a person can open what the bot sent and a test
can read it back. Files appear atomically (temporary file, fsync, rename) under names
that sort by arrival time. Each file starts with the delivery headers a final mail store
adds, ``Return-Path`` (envelope sender) and one ``X-Original-To`` per envelope recipient,
followed by the message exactly as received.

For tests of the relay settings it can refuse (``fail_with``), be down (``close``), offer
STARTTLS and require AUTH PLAIN/LOGIN; all of that is off by default.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import ipaddress
import itertools
import os
import secrets
import ssl
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.listener import SMTPServer

FailAt = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    path: Path

    def parsed(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def self_signed_certificate(directory: Path, hostname: str = "localhost") -> tuple[Path, Path]:
    """Write a throwaway certificate for ``hostname`` and 127.0.0.1; returns (cert, key).

    For loopback TLS in the demo and the tests only: a client trusts it by loading the
    certificate file as its CA bundle.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(alt_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{hostname}.crt", directory / f"{hostname}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    return cert_path, key_path


def _write_atomically(directory: Path, name: str, data: bytes) -> Path:
    temporary = directory / f".{name}.tmp"
    with temporary.open("xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    final = directory / name
    os.replace(temporary, final)
    # The rename itself must reach the disk, or a crash could lose a file we reported.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


class CaptureServer:
    """A loopback SMTP server that keeps every message it accepts."""

    def __init__(
        self,
        outbox: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        credentials: Credentials | None = None,
        fail_with: tuple[int, str] | None = None,
        fail_at: FailAt = "DATA",
        smtputf8: bool = True,
    ) -> None:
        if credentials is not None and tls_context is None:
            raise ValueError("AUTH on the capture server needs STARTTLS (a tls_context)")
        self.outbox = outbox
        self.fail_with = fail_with
        """``(code, text)`` to answer at ``fail_at`` instead of accepting; settable."""
        self.fail_at: FailAt = fail_at
        self.smtputf8 = smtputf8
        """Offer SMTPUTF8 (RFC 6531), as current relays do; settable, per new session."""
        self._credentials = credentials
        self._tls_context = tls_context
        self._messages: list[CapturedMessage] = []
        self._arrived = asyncio.Condition()
        self._sequence = itertools.count()
        self._server = SMTPServer(self._protocol, host, port)

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def messages(self) -> list[CapturedMessage]:
        """Messages accepted since this object was made, oldest first."""
        return list(self._messages)

    async def start(self) -> None:
        """Listen (again, on the same port after :meth:`close`)."""
        self.outbox.mkdir(parents=True, exist_ok=True)
        await self._server.start()

    async def close(self) -> None:
        """Stop listening: a client now sees the relay as down."""
        await self._server.close()

    async def __aenter__(self) -> CaptureServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # The bound is part of the signature so that no caller can wait forever; it is generous
    # because it is reached only when the mail never comes (a busy machine is slow, not
    # wrong), and waiting for mail that does come returns as soon as it is here.
    async def wait_for(
        self,
        count: int,
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> list[CapturedMessage]:
        """Return the messages once at least ``count`` have arrived, or raise TimeoutError."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self._messages) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"{len(self._messages)} of {count} messages arrived within {timeout} s"
            ) from None
        return list(self._messages)

    def _protocol(self) -> SMTP:
        return SMTP(
            _CaptureHandler(self),
            hostname="capture.localhost",
            ident="KashFlow Permalink capture",
            enable_SMTPUTF8=self.smtputf8,
            tls_context=self._tls_context,
            require_starttls=self._credentials is not None,
            auth_required=self._credentials is not None,
            auth_require_tls=True,
            authenticator=self._authenticate if self._credentials else None,
            loop=asyncio.get_running_loop(),
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        expected = self._credentials
        if expected is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, expected.username.encode()) & hmac.compare_digest(
            auth_data.password, expected.password.encode()
        )
        return AuthResult(success=ok, handled=False)

    def refusal(self, stage: FailAt) -> str | None:
        if self.fail_with is None or self.fail_at != stage:
            return None
        code, text = self.fail_with
        return f"{code} {text}"

    async def keep(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> CapturedMessage:
        delivery = f"Return-Path: <{mail_from}>\r\n" + "".join(
            f"X-Original-To: {rcpt}\r\n" for rcpt in rcpt_tos
        )
        name = f"{time.time_ns():020d}-{next(self._sequence):06d}-{secrets.token_hex(4)}.eml"
        path = await asyncio.to_thread(
            _write_atomically, self.outbox, name, delivery.encode() + raw
        )
        captured = CapturedMessage(mail_from, tuple(rcpt_tos), raw, path)
        async with self._arrived:
            self._messages.append(captured)
            self._arrived.notify_all()
        return captured


class _CaptureHandler:
    def __init__(self, capture: CaptureServer) -> None:
        self._capture = capture

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> object:
        return self._capture.refusal("MAIL") or MISSING

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> object:
        return self._capture.refusal("RCPT") or MISSING

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._capture.refusal("DATA")
        if refusal is not None:
            return refusal
        raw = envelope.original_content or b""
        await self._capture.keep(envelope.mail_from or "", envelope.rcpt_tos, raw)
        return "250 2.0.0 Captured"


__all__ = [
    "CaptureServer",
    "CapturedMessage",
    "Credentials",
    "FailAt",
    "self_signed_certificate",
]
