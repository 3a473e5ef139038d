"""Every sentence the sandbox says to a caller, in one table so each can be corrected.

``StatusDetail`` texts come from KashFlow clients that match on them; where no public
source exists the wording is an assumption (marked below). The fault strings follow what
an ASP.NET (ASMX) service answers when it cannot read a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class StatusTexts:
    """``StatusDetail`` sentences (Status ``NO``) and SOAP fault strings."""

    # Exact: compared by string equality in two unrelated client libraries.
    bad_credentials: str = "Incorrect username or password"
    # Prefix matched by regex in one client family; any trailing text is unknown.
    ip_not_allowed: str = "The IP address of {ip} is not in the access list"
    # Assumed: no public source gives KashFlow's wording.
    api_disabled: str = (
        "API access is not enabled for this account. Enable it in Apps > API Settings."
    )
    # Exact substring special-cased by a 2025 client.
    no_customer_with_email: str = "There is no customer with that email address"
    # Assumed sentences; clients only match the substring "no customer".
    no_customer_with_code: str = "There is no customer with that code"
    no_customer_with_id: str = "There is no customer with that ID"
    # Assumed sentence; clients only match the substring "no invoice".
    no_invoice: str = "There is no invoice with that number"
    # Assumed: the default text of the random-error fault switch.
    transient: str = "The service is temporarily unavailable, please try again later"
    # Assumed: AutoAuthIP with a key that is not the account's, or with AutoAuth off.
    auto_auth_refused: str = "The AutoAuth key is not valid for this account"
    # Assumed: the body of an HTTP 429 (KashFlow publishes no rate limit).
    throttled: str = "Too many requests. Please slow down."

    fault_unreadable: str = (
        "Server was unable to read request. ---> There is an error in XML document (0, 0)."
    )
    fault_not_a_number: str = (
        "Server was unable to read request. ---> There is an error in XML document (1, 1)."
        " ---> Input string was not in a correct format."
    )
    fault_missing_value: str = (
        "Server was unable to read request. ---> Missing required element {name}."
    )
    fault_dtd: str = (
        "Server was unable to read request. ---> For security reasons DTD is prohibited"
        " in this XML document."
    )
    fault_unknown_action: str = (
        "Server did not recognize the value of HTTP Header SOAPAction: {action}."
    )


STATUS_TEXTS: Final = StatusTexts()
