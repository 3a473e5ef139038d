"""The core as tests build it: one store, the sandbox's gateway, the real SMTP mailer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kashflow.client import KashFlow
from permalink.core import Core, CoreConfig
from permalink.db import Database
from permalink.keyring import Keyring
from permalink.relay import SmtpMailer
from permalink.store import SqlStore

PUBLIC_BASE_URL = "https://invoices.example.test"


def make_core(
    db: Database,
    keyring: Keyring,
    gateway: KashFlow,
    *,
    public_base_url: str = PUBLIC_BASE_URL,
    clock: Callable[[], float] = time.time,
    lease_s: float | None = None,
    **config: Any,
) -> Core:
    """A core over ``db`` (the caller closes the database and the gateway)."""
    store = SqlStore(db, keyring, clock=clock, **({} if lease_s is None else {"lease_s": lease_s}))
    return Core(
        CoreConfig(public_base_url=public_base_url, **config),
        gateway=gateway,
        store=store,
        mailer=SmtpMailer(),
        keyring=keyring,
        clock=clock,
    )


__all__ = ["PUBLIC_BASE_URL", "make_core"]
