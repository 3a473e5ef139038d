"""The one settings object of a process, read once at the entry point and passed down.

Values come from command-line options first, then ``KASHFLOW_PERMALINK_*`` environment
variables, then defaults. Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from kashflow.client import ENDPOINT
from kashflow.pdfhosts import DEFAULT_PDF_HOSTS, PdfHosts
from permalink.db import is_database_url
from permalink.egress import RelayAllowList
from permalink.keyring import Keyring, KeyringError
from web.security import TrustedProxies

ENV_PREFIX = "KASHFLOW_PERMALINK_"
ROLES = ("all", "web", "bot")
KEY_FILE = "server.key"
MAX_PDF_BATCH = 100


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Settings:
    state_dir: Path
    public_base_url: str = "http://127.0.0.1:8080"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    lmtp: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = 10 * 1024 * 1024
    kashflow_endpoint: str = ENDPOINT
    kashflow_timeout: float = 20.0
    pdf_concurrency: int = 8
    # Hosts the PDF a PrintInvoice URL points at may come from (comma list, *.domain for
    # any host below it; plain http only for loopback hosts named here).
    pdf_hosts: str = DEFAULT_PDF_HOSTS
    # Invoices per PrintInvoice call (InvoiceNumberList) in a merged PDF; 0 or 1: one call
    # per invoice. Only for accounts where `kashflow-permalink probe` shows one merged PDF.
    pdf_batch: int = 0
    mail_domain: str = "localhost"
    # The receiving MTA's authserv-id (RFC 8601): when set, the bot answers only mail whose
    # From domain that server authenticated (DKIM or SPF aligned, or DMARC).
    trusted_authserv_id: str | None = None
    keys: str | None = None  # the keyring in environment form, instead of the key file
    # postgresql://… shares one state between processes; absent, SQLite in the state dir.
    database_url: str | None = None
    # What this process runs: the web door, the mail bot, or both.
    role: str = "all"
    # Requests one bot process works on at once.
    bot_concurrency: int = 2
    # The first wait before a request whose relay or KashFlow was down is tried again;
    # it doubles with each try, up to an hour.
    retry_base_seconds: float = 30.0
    # How long a bot worker's claim on a message lasts without renewal: after a worker
    # dies, another takes its messages over this long after it last renewed.
    lease_seconds: float = 60.0
    # Reverse proxies in front of the web door, as a comma list of addresses or CIDRs
    # ("10.0.0.5, 192.168.1.0/24"): only a request from one of them has its client address
    # read from X-Forwarded-For or Forwarded; every other request's headers are ignored.
    # The throttles, the sign-in lock and the logs key on that address.
    trusted_proxies: str = ""
    # Relays the operator allows although they are on a local or private network, or on a
    # port other than 25/465/587/2525, as a comma list of HOST or HOST:PORT (the demo's
    # capture relay on loopback). Every other relay must be a public address.
    allow_relay: str = ""
    # The IMAP door: a PEM bundle to trust for mailbox servers instead of the system's,
    # the longest IDLE before looking again, and the pause between looks without IDLE.
    imap_ca_file: Path | None = None
    imap_idle_seconds: float = 300.0
    imap_poll_seconds: float = 60.0

    @property
    def key_file(self) -> Path:
        return self.state_dir / KEY_FILE

    @property
    def proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def relay_allow_list(self) -> RelayAllowList:
        return RelayAllowList.parse(self.allow_relay)

    @property
    def database(self) -> Path:
        return self.state_dir / "state.sqlite3"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def keyring(self) -> Keyring:
        """The server keyring: from the environment if given, else the 0600 key file."""
        try:
            if self.keys:
                return Keyring.from_env(self.keys)
            return Keyring.load(self.key_file)
        except KeyringError as exc:
            raise ConfigError(f"{exc} (create one with `kashflow-permalink keys create`)") from exc
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no server key at {self.key_file}: run `kashflow-permalink keys create`"
            ) from exc


def load(environ: Mapping[str, str] | None, **overrides: object) -> Settings:
    """Build and validate the settings from ``environ`` (None: the process environment)
    and ``overrides`` (command-line values; None means not given)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in Settings.__dataclass_fields__.values():
        raw = env.get(ENV_PREFIX + field.name.upper())
        if raw is not None and raw != "":
            values[field.name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "state_dir" not in values:
        values["state_dir"] = "./var"
    try:
        settings = Settings(
            state_dir=Path(str(values.pop("state_dir"))).resolve(),
            **{k: _coerce(k, v) for k, v in values.items()},  # type: ignore[arg-type]
        )
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    _validate(settings)
    return settings


def _coerce(name: str, value: object) -> object:
    kind = Settings.__dataclass_fields__[name].type
    if not isinstance(value, str):
        return value
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return value.strip().lower() in ("1", "true", "yes", "on")
        if kind == "Path | None":
            return Path(value)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be a {kind}, not {value!r}") from exc
    return value


def _validate(settings: Settings) -> None:
    url = urlsplit(settings.public_base_url)
    if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
        raise ConfigError(
            "public_base_url must be an absolute http(s) URL such as https://invoices.example.com"
        )
    for name in ("http_port", "smtp_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} must be 0-65535, not {port}")
    if settings.pdf_concurrency < 1:
        raise ConfigError("pdf_concurrency must be at least 1")
    try:
        PdfHosts.parse(settings.pdf_hosts)
    except ValueError as exc:
        raise ConfigError(f"pdf_hosts: {exc}") from exc
    if not 0 <= settings.pdf_batch <= MAX_PDF_BATCH:
        raise ConfigError(f"pdf_batch must be 0 (off) to {MAX_PDF_BATCH}")
    if settings.bot_concurrency < 1:
        raise ConfigError("bot_concurrency must be at least 1")
    if settings.retry_base_seconds <= 0 or settings.lease_seconds < 1:
        raise ConfigError("retry_base_seconds must be positive and lease_seconds at least 1")
    if settings.imap_idle_seconds <= 0 or settings.imap_poll_seconds <= 0:
        raise ConfigError("imap_idle_seconds and imap_poll_seconds must be positive")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("tls_cert and tls_key go together")
    if settings.role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {settings.role!r}")
    try:
        TrustedProxies.parse(settings.trusted_proxies)
        RelayAllowList.parse(settings.allow_relay)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if settings.database_url is not None and not is_database_url(settings.database_url):
        raise ConfigError(
            "database_url must be a postgresql:// URL (leave it out for SQLite in the state "
            "directory)"
        )
