"""``python -m benchmarks``: run every benchmark with its defaults and print the figures.

``make benchmarks`` runs it beside a throwaway PostgreSQL (``scripts/with-postgres``), which
``benchmarks.scaleout`` needs."""

from __future__ import annotations

import runpy
import sys

SCRIPTS = (
    "benchmarks.intent",
    "benchmarks.resolver",
    "benchmarks.batching",
    "benchmarks.fuzz_links",
    "benchmarks.revocation",
    "benchmarks.kashflow_faults",
    "benchmarks.pdf_bombs",
    "benchmarks.mail_corpus",
    "benchmarks.bot",
    "benchmarks.soak_mail",
    "benchmarks.imap",
    "benchmarks.load",
    "benchmarks.mime_bomb",
    "benchmarks.reissue",
    "benchmarks.scaleout",
    "benchmarks.keys",
    "benchmarks.suites",
)


def main() -> None:
    for name in SCRIPTS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        try:
            runpy.run_module(name, run_name="__main__")
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"   ({name} is not there)")


if __name__ == "__main__":
    main()
