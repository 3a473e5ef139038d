"""The mail the settings pages write: the relay test, and the reply preview.

Mail leaves through the core (:meth:`permalink.core.Core.send_for_account`), by the
account's own relay, exactly as the bot's replies do. What is sent is built from the
shared ``templates/mail/`` folder through :mod:`permalink.mail`. The reply preview on the
bot page sketches the reply's text with sample rows around the accountant's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from permalink.mail import Wording, message


def compose_test_email(*, to: str, from_addr: str, company_name: str, relay: str) -> EmailMessage:
    """A short message proving the relay settings work."""
    text = (
        f"This is a test message from KashFlow Permalink for {company_name}.\n\n"
        f"It was handed to the relay {relay}, so the bot's replies will go out the same way.\n"
        "Nothing needs doing; you can delete it.\n"
    )
    return message(
        to=to,
        from_addr=from_addr,
        subject=f"Test message from KashFlow Permalink ({company_name})",
        text=text,
    )


@dataclass(frozen=True, slots=True)
class PreviewPart:
    """One paragraph of the reply preview; ``field`` names the wording field it shows."""

    text: str
    field: str = ""
    default: str = ""


def preview_reply(wording: Wording, *, company_name: str) -> list[PreviewPart]:
    """How the accountant's words sit around a bot reply, for sample invoices.

    A sketch of the reply's text part: the bot's own template decides the exact layout
    of the invoice list; the words (or, when a field is empty, their defaults) are these.
    """
    defaults = {
        "greeting": "Hello Alex Example,",
        "intro": f"Here are all your invoices from {company_name}.",
        "sign_off": f"Kind regards,\n{company_name}",
    }
    words = {"greeting": wording.greeting, "intro": wording.intro, "sign_off": wording.sign_off}

    def part(name: str) -> PreviewPart:
        return PreviewPart(words[name] or defaults[name], name, defaults[name])

    return [
        part("greeting"),
        part("intro"),
        PreviewPart(
            "  Invoice 1042  issued 3 Mar 2025  due 2 Apr 2025  £1,140.00  [due]\n"
            "  Invoice 1017  issued 6 Jan 2025  due 5 Feb 2025  £480.00  [paid]"
        ),
        PreviewPart("This link always shows all your invoices as they stand:\nhttps://…/l/…"),
        part("sign_off"),
    ]


__all__ = ["PreviewPart", "compose_test_email", "preview_reply"]
