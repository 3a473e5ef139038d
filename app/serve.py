"""``kashflow-permalink serve``: one production process, from start-up to a clean stop.

It reads its keys through the live key file (:class:`app.keys.LiveKeyring`; SIGHUP
re-reads it at once), starts what its role runs, prints one JSON "ready" line on stdout
for a supervisor or a test, logs one line saying what it serves (the doors, SMTP or LMTP,
which KashFlow, the state, the keys), and on SIGTERM or SIGINT stops accepting, finishes
what it holds, and logs one line when it has stopped.
"""

from __future__ import annotations

import json
import logging
import os

from app.check import endpoint_kind
from app.config import SPECS, Settings
from app.keys import LiveKeyring, describe, source_for
from app.runtime import Runtime, stop_signal

log = logging.getLogger(__name__)


async def run_serve(settings: Settings) -> int:
    keys, live = source_for(settings)
    runtime = Runtime(settings, keys)
    async with stop_signal(on_hangup=lambda: _hangup(live)) as stopped:
        try:
            await runtime.start()
            _announce_ready(settings, runtime)
            log.info("%s", _serving(settings, runtime, live))
            await stopped.wait()
        finally:
            await runtime.stop()
    log.info("stopped (%s): no longer serving %s", stopped.reason, settings.public_base_url)
    return 0


def _hangup(live: LiveKeyring | None) -> None:
    if live is None:
        log.warning(
            "SIGHUP: the keys come from %s, which only a restart changes",
            SPECS["keys"].variable,
        )
        return
    live.reload("SIGHUP")


def _serving(settings: Settings, runtime: Runtime, live: LiveKeyring | None) -> str:
    """The start-up line: everything an operator wants to confirm, on one line."""
    assert runtime.core is not None
    doors = []
    if runtime.runs_web:
        doors.append(f"web on {settings.http_host}:{runtime.http_port}")
    if runtime.runs_bot:
        kind = "LMTP" if settings.lmtp else "SMTP"
        tls = " with STARTTLS" if settings.tls_cert else ""
        doors.append(f"mail by {kind}{tls} on {settings.smtp_host}:{runtime.smtp_port}")
    endpoint = settings.kashflow_endpoint
    keys = describe(runtime.core.keyring)
    keys += (
        f" from {live.path} (re-read when it changes, or on SIGHUP)"
        if live
        else (f" from {SPECS['keys'].variable}")
    )
    allowed = ", ".join(settings.allowed_accounts) or "any"
    return (
        f"serving {settings.public_base_url} as role {settings.role}: {'; '.join(doors)}; "
        f"KashFlow at {endpoint} ({endpoint_kind(endpoint)}); state in "
        f"{runtime.core.store.description}; {keys}; KashFlow accounts allowed: {allowed}"
    )


def _announce_ready(settings: Settings, runtime: Runtime) -> None:
    """One JSON line on stdout once everything listens, for a supervisor or a test."""
    ready: dict[str, object] = {"ready": True, "role": settings.role, "pid": os.getpid()}
    if runtime.runs_web:
        ready["url"] = f"http://{settings.http_host}:{runtime.http_port}"
    if runtime.runs_bot:
        ready["smtp_port"] = runtime.smtp_port
    print(json.dumps(ready), flush=True)
