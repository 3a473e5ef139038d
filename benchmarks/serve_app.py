"""A server process for the load benchmark: the resolver (or a bare aiohttp handler).

Prints the URL to load, then serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from aiohttp import web

from app.config import Settings
from app.runtime import build_core, close_core
from kashflow.sandbox import DEMO, pdf_hosts_for
from permalink.core import Core
from permalink.keyring import Keyring
from permalink.scopes import Scope
from web.app import create_app


async def bare(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(kashflow_url: str | None, customer: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if kashflow_url is None:
            app = web.Application()
            app.router.add_get("/", bare)
            path = "/"
            core: Core | None = None
        else:
            settings = Settings(
                state_dir=Path(tmp),
                public_base_url="http://127.0.0.1:1",
                kashflow_endpoint=kashflow_url,
                pdf_hosts=pdf_hosts_for(kashflow_url),
            )
            core = build_core(settings, Keyring.generate())
            app = create_app(core)
            found = await core.kashflow(DEMO).customer_by_code(customer)
            minted = await core.mint(DEMO, found, Scope("all"), minted_by="cli")
            path = minted.url.removeprefix(settings.public_base_url)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        port = runner.addresses[0][1]
        print(f"http://127.0.0.1:{port}{path}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            if core is not None:
                await close_core(core)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kashflow-url")
    parser.add_argument("--customer", default="BRIGHT01")
    args = parser.parse_args()
    asyncio.run(serve(args.kashflow_url, args.customer))


if __name__ == "__main__":
    main()
