"""Minting a permalink: seal it, record it in the account's registry, give its URL.

The settings pages, the CLI, the bot and the demo all mint links the same way, so a link
is always in its account's registry (and so listed and revocable) whoever made it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kashflow.models import Credentials, Customer
from permalink.keyring import Keyring
from permalink.links import Link, new_link, seal
from permalink.registry import LinkRegistry, MintedBy
from permalink.scopes import Scope


@dataclass(frozen=True, slots=True)
class Minted:
    link: Link
    url: str


def link_url(public_base_url: str, token: str) -> str:
    """The permalink's absolute URL, built from the configured base URL (never a Host header)."""
    return f"{public_base_url.rstrip('/')}/l/{token}"


async def mint(
    *,
    registry: LinkRegistry,
    keyring: Keyring,
    public_base_url: str,
    credentials: Credentials,
    customer: Customer,
    scope: Scope,
    now: int,
    expires_in: int | None,
    minted_by: MintedBy,
) -> Minted:
    link = new_link(credentials, customer.id, customer.code, scope, now=now, expires_in=expires_in)
    await registry.add(
        credentials.username,
        link_id=link.link_id,
        customer_code=customer.code,
        customer_name=customer.name,
        scope=str(scope),
        created=now,
        expires=link.expires,
        minted_by=minted_by,
    )
    return Minted(link, link_url(public_base_url, seal(link, keyring)))
