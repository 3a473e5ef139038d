"""Every setting of the product, and the one settings object of a process built from them.

A setting is one field of :class:`Settings`, declared with :func:`setting`: its default,
its :class:`~app.kinds.Kind` (how its text is read and checked, and what it accepts), what
it means, and the commands that read it. Everything else comes from that one
declaration: its command-line option (``http_port`` → ``--http-port``), its environment
variable (``KASHFLOW_PERMALINK_HTTP_PORT``), its line in ``--help`` and its row in the
README's table (:func:`markdown_table`; ``python -m app.config`` prints it). Adding a
setting is adding a field.

Values come from command-line options first, then environment variables, then defaults.
A ``KASHFLOW_PERMALINK_*`` variable that names no setting, or a value a setting does not
accept, stops the command with one line saying which and what is accepted. Settings are
read once, at the entry point; nothing reads the environment at import time.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from app import kinds
from app.kinds import Kind
from kashflow.client import ENDPOINT
from kashflow.pdfhosts import DEFAULT_PDF_HOSTS, PdfHosts
from permalink.egress import RelayAllowList
from permalink.keyring import Keyring, KeyringError
from web.security import TrustedProxies

T = TypeVar("T")

ENV_PREFIX: Final = "KASHFLOW_PERMALINK_"
KEY_FILE: Final = "server.key"
ROLES: Final = ("all", "web", "bot")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")
MAX_PDF_BATCH: Final = 100

#: The commands that run the service or check what it would run with.
SERVING: Final = ("serve", "check")
#: The commands that work on a deployment's state (key, database).
STATEFUL: Final = ("serve", "check", "link", "keys", "revoke", "mail", "accounts")
#: Every command.
EVERY: Final = (*STATEFUL, "probe", "demo")
#: The commands that talk to KashFlow.
KASHFLOW: Final = (*SERVING, "link", "probe")

_META: Final = "kashflow_permalink.setting"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Meta:
    """What :func:`setting` records about a field."""

    kind: Kind[Any]
    meaning: str
    commands: tuple[str, ...]
    #: A value never to be echoed (in an error, a table or a log line).
    secret: bool = False
    #: Names people reach for instead (an old option's), to point them at this one.
    also: tuple[str, ...] = ()


def setting(
    default: T,
    kind: Kind[Any],
    meaning: str,
    commands: Iterable[str] = SERVING,
    *,
    secret: bool = False,
    also: Iterable[str] = (),
) -> T:
    """A field of :class:`Settings` with its metadata (see the module docstring)."""
    meta = Meta(kind, meaning, tuple(commands), secret, tuple(also))
    made: T = field(default=default, repr=not secret, metadata={_META: meta})
    return made


@dataclass(frozen=True, slots=True)
class Settings:
    state_dir: Path = setting(
        Path("/var/lib/kashflow-permalink"),
        kinds.directory(),
        "Where the server key (`server.key`) and, without a database URL, the state "
        "(`state.sqlite3`) live. `keys create` makes it, mode 0700.",
        STATEFUL,
    )
    database_url: str | None = setting(
        None,
        kinds.database_url(),
        "A PostgreSQL database shared by every process of the deployment, instead of "
        "SQLite in the state directory.",
        (*STATEFUL, "demo"),
    )
    keys: str | None = setting(
        None,
        kinds.optional_text(
            "the key file's entries, `<id>:<base64>` separated by commas",
            "KEYS",
            "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        "The server keyring itself, instead of the key file (prefer the variable: an "
        "option shows in the process list). It changes only with a restart, and the `keys` "
        "commands that change keys need the key file.",
        ("serve", "check", "link", "keys", "revoke", "accounts"),
        secret=True,
    )
    public_base_url: str = setting(
        "http://127.0.0.1:8080",
        kinds.http_url(),
        "The address clients use; every link is built from it (never from a request's "
        "Host), and settings forms are accepted only from it.",
        (*SERVING, "link"),
    )
    role: str = setting(
        "all",
        kinds.choice(*ROLES),
        "What this process runs: the web door, the mail bot, or both.",
    )
    http_host: str = setting("127.0.0.1", kinds.host(), "The address the web door listens on.")
    http_port: int = setting(8080, kinds.port(), "The web door's port.")
    smtp_host: str = setting("127.0.0.1", kinds.host(), "The address the mail bot listens on.")
    smtp_port: int = setting(8025, kinds.port(), "The mail bot's port.")
    lmtp: bool = setting(
        False,
        kinds.boolean(),
        "Take mail by LMTP (from Postfix or Exim on the same machine) instead of SMTP.",
    )
    tls_cert: Path | None = setting(
        None,
        kinds.optional_file(),
        "A PEM certificate chain offered with STARTTLS on the mail listener (with the key).",
    )
    tls_key: Path | None = setting(
        None, kinds.optional_file(), "The PEM private key of the certificate."
    )
    max_message_bytes: int = setting(
        10 * 1024 * 1024,
        kinds.whole(1024, metavar="BYTES"),
        "The largest message the bot accepts; larger ones are refused (552).",
    )
    kashflow_endpoint: str = setting(
        ENDPOINT,
        kinds.http_url(),
        "KashFlow's SOAP endpoint (anything else is a test or sandbox KashFlow).",
        KASHFLOW,
        also=("kashflow_url",),
    )
    kashflow_timeout: float = setting(
        20.0,
        kinds.seconds(0, above=True),
        "How long one KashFlow call may take.",
        KASHFLOW,
    )
    pdf_concurrency: int = setting(
        8,
        kinds.whole(1, 64),
        "KashFlow PDF fetches in flight per account, across every link being built, in each "
        "web process (with N web processes, up to N times this).",
    )
    pdf_hosts: str = setting(
        DEFAULT_PDF_HOSTS,
        kinds.checked_text(
            "a comma-separated list of host names, `*.domain` for any host below it",
            "HOST,...",
            PdfHosts.parse,
            "securedwebapp.com,*.kashflow.com",
        ),
        "The hosts the PDF a PrintInvoice URL points at may come from (fetched over https "
        "only; plain http only for loopback hosts named here).",
        KASHFLOW,
    )
    pdf_batch: int = setting(
        0,
        kinds.whole(0, MAX_PDF_BATCH),
        "Invoices per PrintInvoice call (InvoiceNumberList) in a merged PDF; 0 or 1: one "
        "call per invoice. Only for accounts where `kashflow-permalink probe` shows one "
        "merged PDF.",
        (*SERVING, "link"),
    )
    mail_domain: str = setting(
        "localhost",
        kinds.text("a domain name", "DOMAIN"),
        "The domain of the Message-IDs of the bot's replies.",
    )
    trusted_authserv_id: str | None = setting(
        None,
        kinds.optional_text("an authserv-id (RFC 8601)", "ID", "mx.example.co.uk"),
        "The authserv-id your receiving mail server writes in Authentication-Results: when "
        "set, the bot answers only mail whose From domain that server saw pass DKIM or SPF "
        "aligned, or DMARC (the server must strip such headers bearing its id from inbound "
        "mail).",
    )
    allowed_accounts: tuple[str, ...] = setting(
        (),
        kinds.names("KashFlow API usernames", "USERNAME,...", "northwind,acme"),
        "The KashFlow accounts that may sign in and use the bot; empty lets any KashFlow "
        "account (a hosted service). Others are told so on the sign-in page.",
    )
    trusted_proxies: str = setting(
        "",
        kinds.checked_text(
            "a comma-separated list of addresses or CIDRs (empty: none)",
            "ADDRESSES",
            TrustedProxies.parse,
            "10.0.0.5,192.168.1.0/24",
        ),
        "Reverse proxies in front of the web door: only a request from one of them has its "
        "client address read from X-Forwarded-For or Forwarded (the throttles, the sign-in "
        "lock and the logs key on that address); every other request's headers are ignored.",
        (*SERVING, "demo"),
    )
    allow_relay: str = setting(
        "",
        kinds.checked_text(
            "a comma-separated list of HOST or HOST:PORT (the option may be repeated)",
            "HOST[:PORT]",
            RelayAllowList.parse,
            "127.0.0.1:2525",
            repeatable=True,
        ),
        "Relays allowed although they are on a local or private network, or on a port "
        "other than 25, 465, 587 or 2525; every other relay must be a public address.",
    )
    imap_ca_file: Path | None = setting(
        None,
        kinds.optional_file(),
        "A PEM bundle to trust for IMAP mailbox servers instead of the system's (a private "
        "CA, or the demo's own mailbox).",
    )
    imap_idle_seconds: float = setting(
        300.0,
        kinds.seconds(0, above=True),
        "The longest IMAP IDLE before the bot looks at a mailbox again.",
    )
    imap_poll_seconds: float = setting(
        60.0,
        kinds.seconds(0, above=True),
        "The pause between looks at a mailbox whose server has no IDLE.",
    )
    bot_concurrency: int = setting(
        2, kinds.whole(1, 64), "Requests one bot process works on at once."
    )
    retry_base_seconds: float = setting(
        30.0,
        kinds.seconds(0, above=True),
        "The first wait before a request whose relay or KashFlow was down is tried again; "
        "it doubles with each try, up to an hour.",
    )
    lease_seconds: float = setting(
        60.0,
        kinds.seconds(1),
        "How long a bot worker's claim on a message lasts without renewal: after a worker "
        "dies, another takes its messages over this long after it last renewed.",
    )
    log_level: str = setting(
        "info",
        kinds.choice(*LOG_LEVELS),
        "How much is logged (on standard error): `info` is one line per message, request "
        "and start or stop; `debug` adds each SMTP command.",
        EVERY,
    )
    log_format: str = setting(
        "text",
        kinds.choice(*LOG_FORMATS),
        "`json` writes each log line as one JSON object, for log shippers.",
        EVERY,
    )

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
            if not self.keys and not self.key_file.exists():
                raise ConfigError(
                    f"no server key at {self.key_file}: run `kashflow-permalink keys create"
                    f" --state-dir {self.state_dir}`"
                ) from None
            raise ConfigError(str(exc)) from None


# -- the table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting as the table shows it: a field of :class:`Settings` and its metadata."""

    name: str
    default: object
    meta: Meta

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def kind(self) -> Kind[Any]:
        return self.meta.kind

    @property
    def shown_default(self) -> str:
        return self.kind.show(self.default) if self.default not in (None, ()) else ""

    def applies_to(self, command: str | None) -> bool:
        return command is None or command in self.meta.commands


def _spec(f: Field[Any]) -> Spec:
    meta = f.metadata.get(_META)
    if not isinstance(meta, Meta):
        raise TypeError(f"Settings.{f.name} must be declared with setting()")
    return Spec(f.name, f.default, meta)


#: Every setting, in the order of :class:`Settings`.
SPECS: Final[Mapping[str, Spec]] = {f.name: _spec(f) for f in fields(Settings)}
_BY_VARIABLE: Final = {spec.variable: spec for spec in SPECS.values()}
_HINTS: Final = {
    ENV_PREFIX + other.upper(): spec.variable for spec in SPECS.values() for other in spec.meta.also
}


def specs(command: str | None = None) -> list[Spec]:
    """The settings ``command`` reads (every setting when None)."""
    return [spec for spec in SPECS.values() if spec.applies_to(command)]


def named(name: str) -> str:
    """How an operator sets ``name``: ``--http-port`` / ``KASHFLOW_PERMALINK_HTTP_PORT``."""
    spec = SPECS[name]
    return f"{spec.option} / {spec.variable}"


def markdown_table() -> str:
    """The README's table of settings, generated from :class:`Settings`."""
    rows = [
        "| setting | option | variable | default | accepted values | meaning | commands |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in SPECS.values():
        default = f"`{spec.shown_default}`" if spec.shown_default else "(none)"
        cells = (
            f"`{spec.name}`",
            f"`{spec.option}`",
            f"`{spec.variable}`",
            default,
            spec.kind.accepted,
            spec.meta.meaning,
            ", ".join(spec.meta.commands),
        )
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


# -- loading ------------------------------------------------------------------------------


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``KASHFLOW_PERMALINK_*`` variable that names no setting (a misspelling)."""
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable not in _BY_VARIABLE:
            close = [_HINTS[variable]] if variable in _HINTS else []
            close = close or difflib.get_close_matches(variable, list(_BY_VARIABLE), 1, 0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{variable} is not a setting{hint}; the settings are listed by "
                "`kashflow-permalink COMMAND --help` and in the README"
            )


def load(
    environ: Mapping[str, str] | None = None,
    *,
    command: str | None = None,
    **overrides: object,
) -> Settings:
    """Build and check the settings ``command`` reads (all of them when None).

    ``environ`` is None for the process environment; ``overrides`` are command-line values
    by setting name (None: not given), as text to read or already typed.
    """
    settings = Settings(**collect(environ, command=command, **overrides))  # type: ignore[arg-type]
    _validate(settings)
    return settings


def collect(
    environ: Mapping[str, str] | None = None,
    *,
    command: str | None = None,
    **overrides: object,
) -> dict[str, object]:
    """The settings given (by option or variable), read and checked one by one."""
    env = os.environ if environ is None else environ
    check_environment(env)
    values: dict[str, object] = {}
    for spec in specs(command):
        raw = env.get(spec.variable)
        if raw is not None and raw.strip() != "":
            values[spec.name] = _read(spec, raw, spec.variable)
    for name, value in overrides.items():
        if value is None:
            continue
        given = SPECS.get(name)
        if given is None:
            raise TypeError(f"no setting named {name!r}")
        values[name] = _read(given, value, given.option)
    return values


def _read(spec: Spec, value: object, source: str) -> object:
    try:
        if isinstance(value, str):
            return spec.kind.read(value)
        spec.kind.check(value)
        return value
    except ValueError as exc:
        shown = "" if spec.meta.secret or not isinstance(value, str) else f", not {value!r}"
        raise ConfigError(f"{source} {exc}{shown}") from None


def _validate(settings: Settings) -> None:
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError(
            f"{named('tls_cert')} and {named('tls_key')} go together: set both or neither"
        )


__all__ = [
    "ENV_PREFIX",
    "EVERY",
    "KASHFLOW",
    "KEY_FILE",
    "MAX_PDF_BATCH",
    "SERVING",
    "SPECS",
    "STATEFUL",
    "ConfigError",
    "Settings",
    "Spec",
    "check_environment",
    "collect",
    "load",
    "markdown_table",
    "named",
    "setting",
    "specs",
]


if __name__ == "__main__":
    print(markdown_table(), end="")
