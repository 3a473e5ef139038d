"""The core as tests build it: one store, the sandbox's gateway, the real SMTP mailer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kashflow.client import KashFlow
from permalink.core import Core, CoreConfig
from permalink.db import Database
from permalink.egress import RelayAllowList
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
    allow_relay: str = "127.0.0.1",
    **config: Any,
) -> Core:
    """A core over ``db`` (the caller closes the database and the gateway).

    The tests' capture relays listen on loopback, which the relay policy refuses unless
    the operator allows it: ``allow_relay`` allows it as ``--allow-relay`` would (pass
    ``""`` to test the policy itself).
    """
    store = SqlStore(db, keyring, clock=clock, **({} if lease_s is None else {"lease_s": lease_s}))
    return Core(
        CoreConfig(public_base_url=public_base_url, **config),
        gateway=gateway,
        store=store,
        mailer=SmtpMailer(RelayAllowList.parse(allow_relay)),
        keyring=keyring,
        clock=clock,
    )


__all__ = ["PUBLIC_BASE_URL", "make_core"]
