"""The merged PDF with and without InvoiceNumberList batching, at 50 ms and 150 ms a call.

For each latency the sandbox KashFlow runs in its own process and the merged PDF of 100
invoices is built three ways, each next to its floor:

- one invoice per PrintInvoice call, C at a time: ceil(100 / C) x 2 calls (PrintInvoice,
  then the PDF fetch) x latency, plus merging the 100 PDFs;
- a batch of B invoices per call (``print_batch``): ceil(ceil(100 / B) / C) x 2 x latency,
  plus merging the ceil(100 / B) documents (and reading each batch's page count);
- the whole list in one call: 2 x latency plus reading and re-writing the one document.

Rendering is cached by the sandbox and every way is run once before it is timed, so the
figures are the gateway's and the merge's, not the sandbox's PDF renderer's.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from collections.abc import Sequence

from kashflow.client import Account, KashFlow
from kashflow.documents import fetch_batched_pdfs, fetch_pdfs, merge_pdfs, merged_pdf, page_count
from kashflow.sandbox import DEMO, pdf_hosts_for
from tests.support.processes import sandbox_process


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


async def timed_merge(account: Account, numbers: Sequence[int], batch: int, c: int) -> float:
    started = time.perf_counter()
    merged = await merged_pdf(account, numbers, concurrency=c, batch=batch)
    took = time.perf_counter() - started
    assert page_count(merged) >= len(numbers)
    return took


async def merge_cost(account: Account, numbers: Sequence[int], batch: int, c: int) -> float:
    """What the floor adds for CPU: merging the documents a way fetches (and, batched,
    reading each batch's page count), measured on documents already fetched."""
    if batch <= 1:
        pdfs = await fetch_pdfs(account, numbers, concurrency=c)
        started = time.perf_counter()
    else:
        pdfs = await fetch_batched_pdfs(account, numbers, batch=batch, concurrency=c)
        started = time.perf_counter()
        for pdf in pdfs:
            page_count(pdf)
    merge_pdfs(pdfs)
    return time.perf_counter() - started


async def figures(
    url: str, latency: float, count: int, concurrency: int, batches: list[int], rounds: int
) -> None:
    async with KashFlow(url, pdf_hosts=pdf_hosts_for(url)) as kf:
        account = kf.account(DEMO)
        customer = await account.customer_by_code("ACME01")
        invoices = await account.invoices_for_customer(customer.id, lines=False)
        numbers = [i.number for i in invoices][:count]
        ways = [1, *batches]
        for batch in ways:  # warm connections and the sandbox's PDF cache
            await timed_merge(account, numbers, batch, concurrency)
        print(
            f"merged PDF of {len(numbers)} invoices, {latency * 1000:.0f} ms a call, "
            f"C={concurrency}, median of {rounds}:"
        )
        base = None
        for batch in ways:
            took = statistics.median(
                [await timed_merge(account, numbers, batch, concurrency) for _ in range(rounds)]
            )
            cost = statistics.median(
                [await merge_cost(account, numbers, batch, concurrency) for _ in range(rounds)]
            )
            calls = math.ceil(len(numbers) / batch)
            trips = math.ceil(calls / concurrency)
            floor = trips * 2 * latency + cost
            label = "one invoice a call" if batch == 1 else f"{batch} invoices a call"
            base = base or took
            print(
                f"  {label:<20} {ms(took):>9}  floor {ms(floor):>8} "
                f"(= {trips} x 2 x {latency * 1000:.0f} ms + merge {ms(cost)})  "
                f"{took / floor:.2f}x floor, {calls} PrintInvoice call(s)"
                + ("" if batch == 1 else f", {base / took:.1f}x faster than one a call")
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latencies-ms", type=float, nargs="+", default=[50.0, 150.0])
    parser.add_argument("--invoices", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[25, 100])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for latency_ms in args.latencies_ms:
        with sandbox_process(latency_ms) as url:
            asyncio.run(
                figures(
                    url,
                    latency_ms / 1000,
                    args.invoices,
                    args.concurrency,
                    args.batches,
                    args.rounds,
                )
            )


if __name__ == "__main__":
    main()
