"""What hostile invoice documents cost before the merge refuses them, in time and memory.

Each bomb (``tests/support/pdfs.py``) is merged behind a sound one-page document with
``kashflow.documents.merge_pdfs``, as a merged download would be, ``--rounds`` times:

* a page-tree bomb that counts honestly: 8 192 pages named by a few objects;
* a page-tree bomb that lies: one page named 2³⁰ times under a ``/Count`` of 1;
* a content stream of 256 MiB of zeros deflated twice.

For each: its size, the outcome (refused and why, or merged and how big), the time
(median and worst) and the peak of Python's allocations while merging (tracemalloc, in a
run of its own).
``tests/test_reliability_kashflow.py`` asserts the outcomes; this prints the costs.

    python -m benchmarks.pdf_bombs [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

from benchmarks.measure import machine, spread
from kashflow.documents import MAX_PAGES, merge_pdfs
from kashflow.errors import BadDocument
from tests.support.pdfs import (
    DEFLATE_MEGABYTES,
    HONEST_PAGE_TREE_LEVELS,
    LYING_PAGE_TREE_LEVELS,
    deflate_bomb,
    one_page_pdf,
    page_tree_bomb,
)

BOMBS: dict[str, Callable[[], bytes]] = {
    f"page-tree bomb, honest: {2**HONEST_PAGE_TREE_LEVELS} pages": lambda: page_tree_bomb(
        HONEST_PAGE_TREE_LEVELS
    ),
    f"page-tree bomb, lying: 2^{LYING_PAGE_TREE_LEVELS} pages under /Count 1": lambda: (
        page_tree_bomb(LYING_PAGE_TREE_LEVELS, claimed=1)
    ),
    f"{DEFLATE_MEGABYTES} MiB of zeros deflated twice": lambda: deflate_bomb(DEFLATE_MEGABYTES),
}


def merge_once(sound: bytes, bomb: bytes) -> tuple[str, float]:
    """The outcome and the seconds it took."""
    started = time.perf_counter()
    try:
        merged = merge_pdfs([sound, bomb])
        outcome = f"merged, {len(merged):,} bytes"
    except BadDocument as error:
        outcome = f"refused ({error})"
    return outcome, time.perf_counter() - started


def peak_allocations(sound: bytes, bomb: bytes) -> int:
    """The peak of Python's allocations over one more merge, traced apart (tracing slows
    the merge down, so the times above are taken without it)."""
    tracemalloc.start()
    try:
        merge_once(sound, bomb)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def size(octets: int) -> str:
    return f"{octets / 2**20:.1f} MiB" if octets >= 2**20 else f"{octets / 2**10:.0f} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    sound = one_page_pdf()
    print(
        f"PDF bombs behind a one-page document (merge_pdfs, the page cap {MAX_PAGES}; {machine()}):"
    )
    for name, build in BOMBS.items():
        bomb = build()
        runs = [merge_once(sound, bomb) for _ in range(rounds)]
        outcomes = sorted({outcome for outcome, _ in runs})
        print(f"  {name}: {len(bomb):,} bytes")
        print(f"    {'; '.join(outcomes)}")
        print(
            f"    {spread([t for _, t in runs])};"
            f" peak allocations {size(peak_allocations(sound, bomb))}"
        )


if __name__ == "__main__":
    main()
