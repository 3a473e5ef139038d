"""Reading the settings forms: submitted fields into typed values, or a message per field.

The core validates the bot's settings (:meth:`permalink.accounts.AccountSettings.update`);
this module only turns HTML form fields (checkboxes, megabytes, a customer's scope radio
and invoice picker) into the values the core takes, and says clearly when a field cannot
be read at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from permalink.accounts import MB, BotSettings
from permalink.scopes import MAX_KASHFLOW_ID, Scope

#: Longest expiry the customers page offers (ten years, in days).
MAX_EXPIRY_DAYS: Final = 3650
DAY_S: Final = 86_400

#: Plain bot-setting fields the bot page edits, as (form field, core field).
_TEXT_FIELDS: Final = (
    "request_address",
    "reply_from",
    "default_scope",
    "unknown_sender",
    "per_customer_limit",
    "global_limit",
    "relay_host",
    "relay_port",
    "relay_security",
    "relay_username",
    "greeting",
    "intro",
    "sign_off",
)


class FormError(ValueError):
    """A field that cannot be read; the message is for the accountant, ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def text(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def checked(form: Mapping[str, object], name: str) -> bool:
    return name in form


@dataclass(frozen=True, slots=True)
class LinkRequest:
    scope: Scope
    expires_in: int | None


def link_request(form: Mapping[str, object]) -> LinkRequest:
    """The scope and expiry chosen on a customer's "make link" form."""
    kind = text(form, "scope")
    if kind in ("all", "unpaid"):
        scope = Scope.parse(kind)
    elif kind == "invoice":
        number = invoice_number(text(form, "invoice"))
        if number is None:
            raise FormError("invoice", "Pick the invoice the link should show.")
        scope = Scope("invoice", number)
    else:
        raise FormError(
            "scope", "Choose what the link shows: all invoices, unpaid ones, or one invoice."
        )
    days = text(form, "expires_days").strip()
    if not days:
        return LinkRequest(scope, None)
    if not days.isdigit() or not 1 <= int(days) <= MAX_EXPIRY_DAYS:
        raise FormError(
            "expires_days",
            f"The expiry must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}, "
            "or empty for a link that does not expire.",
        )
    return LinkRequest(scope, int(days) * DAY_S)


def invoice_number(typed: str) -> int | None:
    """The invoice number at the start of what the picker holds ("1008" or "1008 · 26 Nov
    2026 · …", as its suggestions read), or None."""
    digits = typed.strip().lstrip("#").split(" ", 1)[0].split("·", 1)[0].strip()
    if not digits.isascii() or not digits.isdigit() or not 1 <= int(digits) <= MAX_KASHFLOW_ID:
        return None
    return int(digits)


@dataclass(slots=True)
class BotForm:
    """What the bot page submitted, split into plain changes and secret actions."""

    changes: dict[str, object] = field(default_factory=dict)
    relay_password: str = ""
    forget_relay_password: bool = False
    use_my_credentials: bool = False
    bot_password: str = ""


def bot_form(form: Mapping[str, object], current: BotSettings) -> BotForm:
    """Read the bot page's fields. Raises :class:`FormError` for an unreadable size."""
    changes: dict[str, object] = {name: text(form, name) for name in _TEXT_FIELDS}
    changes["enabled"] = checked(form, "enabled")
    size = text(form, "max_attachment_mb").strip()
    shown = max(1, round(current.max_attachment_bytes / MB))
    if not size.isdigit():
        raise FormError(
            "max_attachment_mb", "The attachment size limit must be a whole number of megabytes."
        )
    # Only write the size when it was changed: a limit set in bytes elsewhere (the CLI)
    # should not be rounded just because another field was edited.
    if int(size) != shown:
        changes["max_attachment_bytes"] = int(size) * MB
    return BotForm(
        changes=changes,
        relay_password=text(form, "relay_password"),
        forget_relay_password=checked(form, "forget_relay_password"),
        use_my_credentials=checked(form, "use_my_credentials"),
        bot_password=text(form, "bot_password"),
    )


def wording_fields(form: Mapping[str, object]) -> dict[str, str]:
    return {name: text(form, name) for name in ("greeting", "intro", "sign_off")}


#: Fields whose typed value is never kept to show again (passwords).
_SECRET_FIELDS: Final = frozenset(
    {"relay_password", "bot_password", "imap_password", "password", "auto_auth_key"}
)


def typed_values(form: Mapping[str, object]) -> dict[str, str]:
    """What was typed into a form, to show it again after a refusal: text fields and
    ticked boxes, never a password, never the form's own tokens."""
    return {
        name: value
        for name, value in form.items()
        if isinstance(value, str) and name not in _SECRET_FIELDS | {"csrf", "once", "action"}
    }


__all__ = [
    "DAY_S",
    "MAX_EXPIRY_DAYS",
    "BotForm",
    "FormError",
    "LinkRequest",
    "bot_form",
    "checked",
    "invoice_number",
    "link_request",
    "text",
    "typed_values",
    "wording_fields",
]
