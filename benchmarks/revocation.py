"""How soon a revoked link stops opening, measured over HTTP.

The web app runs on a loopback port against the sandbox KashFlow, its state in SQLite.
Each round makes a link, opens it (200), revokes it through a second connection to the
same state database — as ``kashflow-permalink revoke`` does from its own process — and
asks for it again at once. The time is from the revocation's commit returning to the
not-valid page arriving. The same is done for "revoke every link made before now" (the
settings page's revoke-all). ``tests/test_reliability_links.py`` asserts the order (the
very next request is refused); this prints how long that takes.

    python -m benchmarks.revocation [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.measure import machine, served, spread
from permalink.db import Database, open_database
from permalink.links import seal
from permalink.registry import LinkRegistry
from tests.support import WebRig, web_rig

NOT_VALID = b"This link is not valid"


async def register(rig: WebRig, issued_ago: int) -> tuple[str, str]:
    """A new link of the demo account, listed as the settings page lists it: (id, token)."""
    link = rig.link("HOLL01", issued_ago=issued_ago)
    await rig.registry.add(
        "demo",
        customer_code="HOLL01",
        customer_name="Hollow Oak Partners",
        scope="all",
        created=link.issued,
        minted_by="settings",
        link_id=link.link_id,
    )
    return link.link_id, seal(link, rig.keyring)


async def round_trip(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


async def measure(rig: WebRig, other: Database, base: str, rounds: int) -> None:
    registry = LinkRegistry(other)
    one: list[float] = []
    everything: list[float] = []
    refused_next = {"one": 0, "all": 0}
    async with aiohttp.ClientSession() as http:
        for _ in range(rounds):
            rig.clock.advance(60)  # past the last round's cut-off
            link_id, token = await register(rig, issued_ago=0)
            assert (await round_trip(http, f"{base}/l/{token}"))[0] == 200
            assert await registry.revoke("demo", link_id)
            committed = time.perf_counter()
            status, body = await round_trip(http, f"{base}/l/{token}")
            one.append(time.perf_counter() - committed)
            refused_next["one"] += status == 404 and NOT_VALID in body

            _, token = await register(rig, issued_ago=10)
            assert (await round_trip(http, f"{base}/l/{token}"))[0] == 200
            await registry.revoke_all("demo", int(rig.clock()) - 5)
            committed = time.perf_counter()
            status, body = await round_trip(http, f"{base}/l/{token}")
            everything.append(time.perf_counter() - committed)
            refused_next["all"] += status == 404 and NOT_VALID in body

    print(
        f"revocation through a second connection, then the link at once ({rounds} rounds;"
        f" {machine()}):"
    )
    print(
        f"  one link revoked         refused on the very next request {refused_next['one']}"
        f"/{rounds}; commit to not-valid page {spread(one)}"
    )
    print(
        f"  all made before now      refused on the very next request {refused_next['all']}"
        f"/{rounds}; commit to not-valid page {spread(everything)}"
    )


async def run(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with web_rig(Path(tmp)) as rig:
            other = open_database(None, Path(tmp))
            try:
                async with served(rig.app) as base:
                    await measure(rig, other, base, rounds)
            finally:
                other.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
