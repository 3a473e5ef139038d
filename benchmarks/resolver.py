"""Permalink speed, with the sandbox KashFlow at 50 ms per call.

1. The merged PDF of 100 invoices, next to its floor — ceil(100 / C) x 2 x 50 ms (a
   PrintInvoice and a PDF fetch per invoice, C at a time) plus the merge itself — and next
   to the sequential way (one invoice after another), in the same run.
2. The list page of the 220-invoice customer through the real web app over HTTP: p50 and
   p95, next to one KashFlow round trip (GetCompanyDetails) measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from app.config import Settings
from app.runtime import bind, build_core, close_core
from kashflow.client import KashFlow
from kashflow.documents import fetch_pdfs, merge_pdfs, merged_pdf
from kashflow.sandbox import DEMO, pdf_hosts_for
from permalink.keyring import Keyring
from permalink.scopes import Scope
from tests.support.processes import sandbox_process
from web.app import create_app


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def merged_pdf_figures(url: str, latency: float, concurrency: int, count: int) -> None:
    async with KashFlow(url, pdf_hosts=pdf_hosts_for(url)) as kf:
        account = kf.account(DEMO)
        customer = await account.customer_by_code("ACME01")
        numbers = [i.number for i in await account.invoices_for_customer(customer.id)][:count]
        await fetch_pdfs(account, numbers[:concurrency])  # warm connections and PDF cache
        await fetch_pdfs(account, numbers)

        started = time.perf_counter()
        merged = await merged_pdf(account, numbers, concurrency=concurrency)
        concurrent = time.perf_counter() - started

        started = time.perf_counter()
        pdfs = [await account.invoice_pdf(n) for n in numbers]
        merge_start = time.perf_counter()
        merge_pdfs(pdfs)
        merge_only = time.perf_counter() - merge_start
        sequential = time.perf_counter() - started

    floor = math.ceil(count / concurrency) * 2 * latency + merge_only
    print(f"merged PDF of {count} invoices ({len(merged) // 1024} KiB), C={concurrency}:")
    print(f"  bounded concurrency  {ms(concurrent)}")
    print(
        f"  floor                {ms(floor)}  (= {math.ceil(count / concurrency)} x 2 x "
        f"{latency * 1000:.0f} ms + merge {ms(merge_only)})"
    )
    print(f"  ratio to floor       {concurrent / floor:.2f}x  (goal <= 1.2x)")
    print(f"  sequential           {ms(sequential)}  ({sequential / concurrent:.1f}x slower)")


async def list_page_figures(url: str, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = bind("127.0.0.1", 0)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = Settings(
            state_dir=Path(tmp),
            public_base_url=base,
            kashflow_endpoint=url,
            pdf_hosts=pdf_hosts_for(url),
        )
        core = build_core(settings, Keyring.generate())
        runner = web.AppRunner(create_app(core), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        account = core.kashflow(DEMO)
        customer = await account.customer_by_code("ACME01")
        minted = await core.mint(DEMO, customer, Scope("all"), minted_by="cli")
        trips, pages = [], []
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(minted.url) as resp:
                    await resp.read()
            for _ in range(rounds):
                started = time.perf_counter()
                await account.company_details()
                trips.append(time.perf_counter() - started)
                started = time.perf_counter()
                async with http.get(minted.url) as resp:
                    body = await resp.read()
                    assert resp.status == 200, resp.status
                pages.append(time.perf_counter() - started)
        await runner.cleanup()
        await close_core(core)
    trip = statistics.median(trips)
    p50 = statistics.median(pages)
    p95 = statistics.quantiles(pages, n=20)[-1]
    print(f"list page, {customer.code} ({len(body) // 1024} KiB HTML), {rounds} rounds:")
    print(f"  one KashFlow round trip p50  {ms(trip)}")
    print(f"  list page p50                {ms(p50)}   p95 {ms(p95)}")
    print(f"  ratio p50 to one round trip  {p50 / trip:.2f}x  (goal <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--invoices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with sandbox_process(args.latency_ms) as url:
        asyncio.run(
            merged_pdf_figures(url, args.latency_ms / 1000, args.concurrency, args.invoices)
        )
        asyncio.run(list_page_figures(url, args.rounds))


if __name__ == "__main__":
    main()
