"""The ``kashflow-permalink`` command: demo, serve, link, keys and check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence

from app import config
from app.config import ConfigError, Settings
from kashflow.client import KashFlow
from kashflow.errors import KashFlowError, NotFound
from kashflow.models import Credentials
from permalink.db import Database
from permalink.keyring import Keyring, KeyringError
from permalink.minting import mint
from permalink.registry import LinkRegistry
from permalink.scopes import Scope

log = logging.getLogger("kashflow_permalink")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"kashflow-permalink: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kashflow-permalink",
        description="Self-service invoice permalinks and mail bot for KashFlow.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run everything on loopback with a sandbox KashFlow")
    demo.add_argument("--state-dir", default="./var/demo")
    demo.add_argument("--http-port", type=int, default=8080, help="0 picks a free port")
    demo.add_argument("--smtp-port", type=int, default=8025, help="0 picks a free port")
    demo.add_argument("--kashflow-latency-ms", type=float, default=0.0)
    demo.set_defaults(run=_demo)

    serve = sub.add_parser("serve", help="run the web resolver and the mail bot (production)")
    serve.add_argument("--state-dir")
    serve.add_argument("--http-host")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--smtp-host")
    serve.add_argument("--smtp-port", type=int)
    serve.add_argument("--public-base-url")
    serve.set_defaults(run=_serve)

    link = sub.add_parser(
        "link",
        help="mint a permalink (credentials from KASHFLOW_USERNAME / KASHFLOW_PASSWORD)",
    )
    link.add_argument("--customer", required=True, help="customer code or email address")
    link.add_argument("--scope", default="all", help="all, unpaid or invoice:NUMBER")
    link.add_argument("--expires", type=float, metavar="DAYS", help="valid for DAYS days")
    link.add_argument("--state-dir")
    link.add_argument("--kashflow-url", help="KashFlow SOAP endpoint (default: the real one)")
    link.add_argument("--public-base-url")
    link.set_defaults(run=_link)

    keys = sub.add_parser("keys", help="create or rotate the server key")
    keys.add_argument("action", choices=["create", "rotate", "retire", "list"])
    keys.add_argument("key_id", nargs="?", type=int, help="with retire: the key id to drop")
    keys.add_argument("--state-dir")
    keys.set_defaults(run=_keys)

    check = sub.add_parser("check", help="verify the configuration, KashFlow and the relays")
    check.add_argument("--state-dir")
    check.add_argument("--kashflow-url")
    check.set_defaults(run=_check)
    return parser


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return config.load(None, state_dir=getattr(args, "state_dir", None), **extra)


def _keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = settings.key_file
    try:
        if args.action == "create":
            keyring = Keyring.create(path)
            print(f"created {path} (key {keyring.current_id}, mode 0600)")
        elif args.action == "rotate":
            keyring = Keyring.load(path).rotated()
            keyring.save(path)
            print(f"new links now use key {keyring.current_id}; older keys still open links")
        elif args.action == "retire":
            if args.key_id is None:
                raise ConfigError("keys retire needs the key id to drop")
            keyring = Keyring.load(path).retired(args.key_id)
            keyring.save(path)
            print(f"key {args.key_id} retired: links sealed with it no longer open")
        else:
            keyring = Keyring.load(path)
            ids = ", ".join(str(i) for i in keyring.key_ids)
            print(f"keys: {ids} (current {keyring.current_id})")
    except (KeyringError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from exc
    return 0


def _credentials_from_env() -> Credentials:
    username = os.environ.get("KASHFLOW_USERNAME", "")
    password = os.environ.get("KASHFLOW_PASSWORD", "")
    if not username or not password:
        raise ConfigError("set KASHFLOW_USERNAME and KASHFLOW_PASSWORD (the API password)")
    return Credentials(username, password)


def _link(args: argparse.Namespace) -> int:
    try:
        scope = Scope.parse(args.scope)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    settings = _settings(
        args, kashflow_endpoint=args.kashflow_url, public_base_url=args.public_base_url
    )
    credentials = _credentials_from_env()
    keyring = settings.keyring()
    url = asyncio.run(_mint(settings, keyring, credentials, args.customer, scope, args.expires))
    print(url)
    return 0


async def _mint(
    settings: Settings,
    keyring: Keyring,
    credentials: Credentials,
    customer_ref: str,
    scope: Scope,
    expires_days: float | None,
) -> str:
    async with KashFlow(settings.kashflow_endpoint, timeout=settings.kashflow_timeout) as kf:
        account = kf.account(credentials)
        try:
            if "@" in customer_ref:
                customer = await account.customer_by_email(customer_ref)
            else:
                customer = await account.customer_by_code(customer_ref)
            if scope.kind == "invoice" and scope.invoice is not None:
                invoice = await account.invoice(scope.invoice)
                if invoice.customer_id != customer.id:
                    raise ConfigError(f"invoice {scope.invoice} is not {customer.code}'s")
        except NotFound as exc:
            raise ConfigError(f"KashFlow has no customer or invoice matching that: {exc}") from exc
        except KashFlowError as exc:
            raise ConfigError(f"{exc.message} ({type(exc).__name__})") from exc
    expires_in = None if expires_days is None else max(1, int(expires_days * 86400))
    db = Database(settings.database)
    try:
        minted = await mint(
            registry=LinkRegistry(db),
            keyring=keyring,
            public_base_url=settings.public_base_url,
            credentials=credentials,
            customer=customer,
            scope=scope,
            now=int(time.time()),
            expires_in=expires_in,
            minted_by="cli",
        )
    finally:
        db.close()
    return minted.url


def _demo(args: argparse.Namespace) -> int:
    from app.demo import prepare, run_demo

    state, keyring = prepare(args.state_dir)
    return asyncio.run(
        run_demo(
            state,
            keyring,
            http_port=args.http_port,
            smtp_port=args.smtp_port,
            latency_ms=args.kashflow_latency_ms,
        )
    )


def _serve(args: argparse.Namespace) -> int:
    from app.serve import run_serve

    settings = _settings(
        args,
        http_host=args.http_host,
        http_port=args.http_port,
        smtp_host=args.smtp_host,
        smtp_port=args.smtp_port,
        public_base_url=args.public_base_url,
    )
    return asyncio.run(run_serve(settings, settings.keyring()))


def _check(args: argparse.Namespace) -> int:
    from app.serve import run_check

    settings = _settings(args, kashflow_endpoint=args.kashflow_url)
    return asyncio.run(run_check(settings, settings.keyring()))


if __name__ == "__main__":
    sys.exit(main())
