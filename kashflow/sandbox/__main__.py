"""``python -m kashflow.sandbox``: run the sandbox KashFlow on its own (benchmarks, manual use).

Prints the SOAP endpoint and the seeded logins, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from kashflow.sandbox.server import Sandbox


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kashflow.sandbox", description="Serve the sandbox KashFlow SOAP API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per call")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    sandbox = Sandbox(latency_ms=args.latency_ms, seed=args.seed)
    await sandbox.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    print(sandbox.url, flush=True)
    for username in sandbox.accounts:
        # Sandbox logins are public fixtures, printed so scripts can sign in.
        login = sandbox.credentials(username)
        print(f"  {login.username} / {login.password}", flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
