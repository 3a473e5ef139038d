"""A server process for the load benchmark: the resolver (or a bare aiohttp handler).

Prints the URL to load, then serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiohttp import web

from kashflow.client import KashFlow
from kashflow.sandbox import DEMO
from permalink.db import Database
from permalink.keyring import Keyring
from permalink.minting import mint
from permalink.registry import LinkRegistry
from permalink.scopes import Scope
from web.app import WebConfig, create_app


async def bare(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(kashflow_url: str | None, customer: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if kashflow_url is None:
            app = web.Application()
            app.router.add_get("/", bare)
            path = "/"
            kf = None
        else:
            db = Database(Path(tmp) / "state.sqlite3")
            keyring = Keyring.generate()
            kf = KashFlow(kashflow_url, connections=64)
            app = create_app(
                WebConfig(public_base_url="http://127.0.0.1:1"), kashflow=kf, keyring=keyring, db=db
            )
            found = await kf.account(DEMO).customer_by_code(customer)
            minted = await mint(
                registry=LinkRegistry(db),
                keyring=keyring,
                public_base_url="",
                credentials=DEMO,
                customer=found,
                scope=Scope("all"),
                now=int(time.time()),
                expires_in=None,
                minted_by="cli",
            )
            path = minted.url
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        port = runner.addresses[0][1]
        print(f"http://127.0.0.1:{port}{path}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            if kf is not None:
                await kf.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kashflow-url")
    parser.add_argument("--customer", default="BRIGHT01")
    args = parser.parse_args()
    asyncio.run(serve(args.kashflow_url, args.customer))


if __name__ == "__main__":
    main()
