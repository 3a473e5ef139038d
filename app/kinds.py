"""The kinds of value a setting takes: how its text is read and checked, and how it is told.

Each :class:`Kind` turns the text of a command-line option or an environment variable into
a typed value (``read``) or says, in words an operator can act on, why it cannot
(:class:`ValueError`); it checks a typed value given directly the same way (``check``);
and it describes what it accepts for ``--help`` and the README's table of settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from permalink.db import is_database_url

T = TypeVar("T")

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """One kind of setting value (see the module docstring)."""

    #: What is accepted, in words, for ``--help`` and the table ("0-65535").
    accepted: str
    #: The placeholder shown after the option in ``--help`` (``PORT``).
    metavar: str
    convert: Callable[[str], T]
    validate: Callable[[Any], None]
    #: A value it accepts, as text (for the tests that read every setting both ways).
    example: str
    #: How a value is written back (the table's default column).
    show: Callable[[T], str] = str
    #: A yes/no flag: ``--lmtp`` / ``--no-lmtp`` rather than ``--lmtp VALUE``.
    flag: bool = False
    #: A list whose option may be given several times (the values are joined by commas).
    repeatable: bool = False

    def read(self, text: str) -> T:
        """The value ``text`` stands for; ValueError saying what is accepted otherwise."""
        value = self.convert(text.strip())
        self.validate(value)
        return value

    def check(self, value: object) -> None:
        """Raise ValueError unless ``value`` (already typed) is acceptable."""
        self.validate(value)


def text(accepted: str = "text", metavar: str = "TEXT") -> Kind[str]:
    def validate(value: object) -> None:
        if not isinstance(value, str):
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, metavar, str, validate, "example")


def optional_text(
    accepted: str, metavar: str = "TEXT", example: str = "example"
) -> Kind[str | None]:
    def validate(value: object) -> None:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, metavar, lambda t: t or None, validate, example, show=lambda v: v or "")


def whole(
    low: int, high: int | None = None, *, metavar: str = "N", accepted: str = ""
) -> Kind[int]:
    if not accepted:
        accepted = (
            f"a whole number from {low} to {high}"
            if high is not None
            else f"a whole number, at least {low}"
        )

    def convert(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"must be {accepted}") from None

    def validate(value: object) -> None:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, metavar, convert, validate, str(high if high is not None else low + 1))


def port() -> Kind[int]:
    return whole(0, 65535, metavar="PORT", accepted="a port, 0-65535 (0 picks a free one)")


def seconds(low: float, *, above: bool = False) -> Kind[float]:
    accepted = f"a number of seconds, {'more than' if above else 'at least'} {low:g}"

    def convert(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"must be {accepted}") from None

    def validate(value: object) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"must be {accepted}")
        if value != value or (value <= low if above else value < low):  # NaN fails too
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, "SECONDS", convert, validate, f"{low + 2.5:g}", show=lambda v: f"{v:g}")


def boolean() -> Kind[bool]:
    accepted = "true or false (also yes/no, on/off, 1/0)"

    def convert(value: str) -> bool:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"must be {accepted}")

    def validate(value: object) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"must be {accepted}")

    return Kind(
        accepted, "BOOL", convert, validate, "true", show=lambda v: str(v).lower(), flag=True
    )


def choice(*options: str) -> Kind[str]:
    accepted = ", ".join(options[:-1]) + " or " + options[-1]

    def convert(value: str) -> str:
        return value.lower()

    def validate(value: object) -> None:
        if value not in options:
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, "{" + ",".join(options) + "}", convert, validate, options[-1])


def directory() -> Kind[Path]:
    accepted = "a directory path (a relative one is taken from where the command starts)"

    def validate(value: object) -> None:
        if not isinstance(value, Path):
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, "DIR", lambda t: _path(t, accepted), validate, "/srv/kashflow-permalink")


def optional_file() -> Kind[Path | None]:
    accepted = "a file path (a relative one is taken from where the command starts)"

    def validate(value: object) -> None:
        if value is not None and not isinstance(value, Path):
            raise ValueError(f"must be {accepted}")

    return Kind(
        accepted,
        "FILE",
        lambda t: _path(t, accepted) if t else None,
        validate,
        "/etc/kashflow-permalink/tls.pem",
        show=lambda v: "" if v is None else str(v),
    )


def _path(value: str, accepted: str) -> Path:
    if not value or "\x00" in value:
        raise ValueError(f"must be {accepted}")
    return Path(value).expanduser().resolve()


def http_url() -> Kind[str]:
    accepted = "an absolute http:// or https:// URL, without query or fragment"

    def validate(value: object) -> None:
        if not isinstance(value, str):
            raise ValueError(f"must be {accepted}")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be {accepted}")
        if parts.query or parts.fragment:
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, "URL", lambda t: t, validate, "https://invoices.example.co.uk")


def database_url() -> Kind[str | None]:
    accepted = "a postgresql:// URL (leave it out for SQLite in the state directory)"

    def validate(value: object) -> None:
        if value is not None and not (isinstance(value, str) and is_database_url(value)):
            raise ValueError(f"must be {accepted}")

    return Kind(
        accepted,
        "URL",
        lambda t: t or None,
        validate,
        "postgresql://kashflow@db.example/permalink",
        show=lambda v: v or "",
    )


def host() -> Kind[str]:
    accepted = "an IP address or host name of this machine"

    def validate(value: object) -> None:
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, "HOST", lambda t: t, validate, "0.0.0.0")  # noqa: S104 - an example


def checked_text(
    accepted: str,
    metavar: str,
    parse: Callable[[str], object],
    example: str,
    *,
    repeatable: bool = False,
) -> Kind[str]:
    """Text kept as given, accepted only if ``parse`` reads it (its ValueError says why)."""

    def validate(value: object) -> None:
        if not isinstance(value, str):
            raise ValueError(f"must be {accepted}")
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"must be {accepted} ({exc})") from None

    return Kind(accepted, metavar, lambda t: t, validate, example, repeatable=repeatable)


def names(
    what: str, metavar: str = "NAME,...", example: str = "first,second"
) -> Kind[tuple[str, ...]]:
    accepted = f"a comma-separated list of {what} (empty: any)"

    def convert(value: str) -> tuple[str, ...]:
        return tuple(sorted({part.strip().lower() for part in value.split(",") if part.strip()}))

    def validate(value: object) -> None:
        if not isinstance(value, tuple) or not all(
            isinstance(item, str) and item and "," not in item for item in value
        ):
            raise ValueError(f"must be {accepted}")

    return Kind(accepted, metavar, convert, validate, example, show=",".join)


__all__ = [
    "Kind",
    "boolean",
    "checked_text",
    "choice",
    "database_url",
    "directory",
    "host",
    "http_url",
    "names",
    "optional_file",
    "optional_text",
    "port",
    "seconds",
    "text",
    "whole",
]
