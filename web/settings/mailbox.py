"""The bot page's IMAP fieldset: reading its fields, and saving them with the password sealed.

The fieldset (``templates/settings/_mailbox.html``) posts with the rest of the bot form;
its fields carry an ``imap_`` prefix. :func:`mailbox_form` reads and checks them, and
:func:`check_mailbox` checks them against what is saved, both before anything is saved;
:func:`save_mailbox` stores them (:mod:`permalink.mailboxes`). A refusal is a
:class:`~permalink.mailboxes.MailboxError`; :func:`form_field` names the input it is about.
A form without the fieldset's fields leaves the mailbox settings as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from permalink.mailboxes import (
    DEFAULT_PORTS,
    FIELDS,
    PASSWORD_LIMIT,
    MailboxError,
    Mailboxes,
    clean,
)


@dataclass(slots=True)
class MailboxForm:
    """What the fieldset submitted: plain changes, and what to do with the password."""

    changes: dict[str, object] = field(default_factory=dict)
    password: str = ""
    forget_password: bool = False


def _text(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def mailbox_form(form: Mapping[str, object]) -> MailboxForm | None:
    """The fieldset's values, checked; None when the form has no fieldset. Raises
    :class:`MailboxError` with a sentence for the accountant."""
    if "imap_host" not in form:
        return None
    changes: dict[str, object] = {name: _text(form, f"imap_{name}") for name in FIELDS}
    security = str(changes["security"]) or "ssl"
    changes["security"] = security
    if not str(changes["port"]).strip():
        changes["port"] = DEFAULT_PORTS.get(security, 993)
    if not str(changes["folder"]).strip():
        changes["folder"] = "INBOX"
    password = _text(form, "imap_password")
    if len(password) > PASSWORD_LIMIT:
        raise MailboxError(
            "password", f"The IMAP password can be at most {PASSWORD_LIMIT} characters long."
        )
    return MailboxForm(
        changes=clean(changes),
        password=password,
        forget_password="imap_forget_password" in form,
    )


def form_field(error: MailboxError) -> str:
    """The fieldset's input a refusal is about."""
    return f"imap_{error.field}"


async def check_mailbox(mailboxes: Mailboxes, account: str, submitted: MailboxForm) -> None:
    """Raise what saving the fieldset would refuse, saving nothing."""
    await mailboxes.check(account, **submitted.changes)


async def save_mailbox(mailboxes: Mailboxes, account: str, submitted: MailboxForm) -> None:
    """Store the fieldset: the settings first (the step that may refuse), then a typed
    password replaces the saved one (sealed), so a refusal never leaves a new password
    stored beside the old settings."""
    await mailboxes.update(account, **submitted.changes)
    if submitted.password:
        await mailboxes.set_password(account, submitted.password)
    elif submitted.forget_password:
        await mailboxes.set_password(account, None)


__all__ = ["MailboxForm", "check_mailbox", "form_field", "mailbox_form", "save_mailbox"]
