"""The ``kashflow-permalink`` command: demo, serve, link, keys, revoke, check and probe."""

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
from kashflow.errors import KashFlowError, NotFound
from kashflow.models import Credentials
from permalink.db import is_database_url
from permalink.keyring import Keyring, KeyringError
from permalink.links import InvalidLink, open_link
from permalink.scopes import Scope

log = logging.getLogger("kashflow_permalink")


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the product writes (the state database and its journal, the key file,
    # the demo's outbox and logs) holds secrets or clients' mail: owner only, whatever
    # umask the process was started with.
    os.umask(0o077)
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
    demo.add_argument(
        "--database-url", help="postgresql://… shared by every process (default: SQLite)"
    )
    demo.add_argument(
        "--web-replicas", type=int, default=1, help="web processes to start (each its own port)"
    )
    demo.add_argument(
        "--bot-workers", type=int, default=1, help="bot processes to start (sharing one port)"
    )
    demo.add_argument("--trusted-proxies", metavar="ADDRESSES", help=_PROXIES_HELP)
    demo.add_argument(
        "--imap",
        action="store_true",
        help="also read requests from an IMAP mailbox (Dovecot on loopback)",
    )
    demo.set_defaults(run=_demo)

    serve = sub.add_parser("serve", help="run the web resolver and the mail bot (production)")
    serve.add_argument("--state-dir")
    serve.add_argument("--http-host")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--smtp-host")
    serve.add_argument("--smtp-port", type=int)
    serve.add_argument("--public-base-url")
    serve.add_argument("--database-url", help="postgresql://… (default: SQLite in the state dir)")
    serve.add_argument("--role", choices=["all", "web", "bot"], help="what this process runs")
    serve.add_argument("--pdf-hosts", help="hosts invoice PDFs may be fetched from (comma list)")
    serve.add_argument("--trusted-proxies", metavar="ADDRESSES", help=_PROXIES_HELP)
    serve.add_argument(
        "--allow-relay",
        action="append",
        metavar="HOST[:PORT]",
        help="allow this relay although it is on a local or private network or an unusual "
        "port (repeatable)",
    )
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
    link.add_argument("--pdf-hosts", help="hosts invoice PDFs may be fetched from (comma list)")
    link.set_defaults(run=_link)

    keys = sub.add_parser("keys", help="create or rotate the server key")
    keys.add_argument("action", choices=["create", "rotate", "retire", "list"])
    keys.add_argument("key_id", nargs="?", type=int, help="with retire: the key id to drop")
    keys.add_argument("--state-dir")
    keys.set_defaults(run=_keys)

    revoke = sub.add_parser("revoke", help="revoke one link, by its URL or its link id")
    revoke.add_argument("link", help="the link's URL (or token), or its link id")
    revoke.add_argument("--state-dir")
    revoke.add_argument("--database-url")
    revoke.set_defaults(run=_revoke)

    accounts = sub.add_parser("accounts", help="operator actions on an account")
    accounts.add_argument("action", choices=["allow-domain"])
    accounts.add_argument("account", help="the account's KashFlow API username")
    accounts.add_argument("domain", help="the mail domain the account may use")
    accounts.add_argument("--state-dir")
    accounts.add_argument("--database-url")
    accounts.set_defaults(run=_accounts)

    check = sub.add_parser("check", help="verify the configuration, KashFlow and the relays")
    check.add_argument("--state-dir")
    check.add_argument("--kashflow-url")
    check.add_argument("--pdf-hosts", help="hosts invoice PDFs may be fetched from (comma list)")
    check.add_argument("--allow-relay", action="append", metavar="HOST[:PORT]")
    check.set_defaults(run=_check)

    probe = sub.add_parser(
        "probe",
        help="show how the configured KashFlow behaves, in shape only (no client data); "
        "credentials from KASHFLOW_USERNAME / KASHFLOW_PASSWORD",
    )
    probe.add_argument("--customer", required=True, metavar="CODE", help="a customer's code")
    probe.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=600.0,
        metavar="SECONDS",
        help="also re-open the PDF after SECONDS (600 when no number is given)",
    )
    probe.add_argument("--kashflow-url", help="KashFlow SOAP endpoint (default: the real one)")
    probe.add_argument("--pdf-hosts", help="hosts invoice PDFs may be fetched from (comma list)")
    probe.set_defaults(run=_probe)
    return parser


_PROXIES_HELP = (
    "comma list of reverse-proxy addresses or CIDRs whose X-Forwarded-For / Forwarded "
    "headers name the client (default: none, the socket peer is the client)"
)


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return config.load(None, state_dir=getattr(args, "state_dir", None), **extra)


def _keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = settings.key_file
    try:
        if args.action == "create":
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        args,
        kashflow_endpoint=args.kashflow_url,
        public_base_url=args.public_base_url,
        pdf_hosts=args.pdf_hosts,
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
    from app.runtime import build_core, close_core

    core = build_core(settings, keyring)
    try:
        account = core.kashflow(credentials)
        try:
            if "@" in customer_ref:
                customer = await account.customer_by_email(customer_ref)
            else:
                customer = await account.customer_by_code(customer_ref)
            for number in scope.numbers:
                invoice = await account.invoice(number)
                if invoice.customer_id != customer.id:
                    raise ConfigError(f"invoice {number} is not {customer.code}'s")
        except NotFound as exc:
            raise ConfigError(f"KashFlow has no customer or invoice matching that: {exc}") from exc
        except KashFlowError as exc:
            raise ConfigError(f"{exc.message} ({type(exc).__name__})") from exc
        expires_in = None if expires_days is None else max(1, int(expires_days * 86400))
        minted = await core.mint(
            credentials, customer, scope, minted_by="cli", expires_in=expires_in
        )
    finally:
        await close_core(core)
    return minted.url


def _revoke(args: argparse.Namespace) -> int:
    """Revoke a link by its URL (or token) or its id, on the configured store."""
    settings = _settings(args, database_url=args.database_url)
    keyring = settings.keyring()
    return asyncio.run(_revoke_one(settings, keyring, args.link.strip()))


async def _revoke_one(settings: Settings, keyring: Keyring, ref: str) -> int:
    from app.runtime import build_core, close_core

    core = build_core(settings, keyring)
    try:
        links = core.store.links
        token = ref.rsplit("/l/", 1)[-1].split("/", 1)[0] if "/l/" in ref else ref
        try:
            link = open_link(token, keyring, now=int(time.time()))
        except InvalidLink:
            found = await links.find(ref) if len(ref) <= 64 else None
            if found is None:
                raise ConfigError(
                    "that is neither a link this server can open nor a known link id"
                ) from None
            account, link_id = found.account, found.link_id
        else:
            account, link_id = link.account, link.link_id
            if await links.get(account, link_id) is None:
                # A link the registry never saw (made elsewhere): record it to revoke it.
                await links.add(
                    account,
                    link_id=link_id,
                    customer_code=link.customer_code,
                    customer_name=link.customer_code,
                    scope=str(link.scope),
                    created=link.issued,
                    expires=link.expires,
                    minted_by="cli",
                )
        if await links.revoke(account, link_id):
            print(f"revoked link {link_id} of {account}: it no longer opens")
        else:
            print(f"link {link_id} of {account} was already revoked")
    finally:
        await close_core(core)
    return 0


def _accounts(args: argparse.Namespace) -> int:
    """``accounts allow-domain``: the operator vouches that an account controls a domain."""
    settings = _settings(args, database_url=args.database_url)
    return asyncio.run(_allow_domain(settings, settings.keyring(), args.account, args.domain))


async def _allow_domain(settings: Settings, keyring: Keyring, account: str, domain: str) -> int:
    from app.runtime import build_core, close_core
    from permalink.accounts import account_key

    try:
        key = account_key(account)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    core = build_core(settings, keyring)
    try:
        proof = await core.store.domains.mark_proved(key, domain, "operator")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        await close_core(core)
    print(f"{key} may now use addresses at {proof.domain}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.demo import Shape, prepare, run_demo

    if args.web_replicas < 1 or args.bot_workers < 1:
        raise ConfigError("--web-replicas and --bot-workers are at least 1")
    if args.database_url is not None and not is_database_url(args.database_url):
        raise ConfigError("--database-url must be a postgresql:// URL")
    settings = config.load(None, state_dir=args.state_dir, trusted_proxies=args.trusted_proxies)
    state, keyring = prepare(args.state_dir)
    shape = Shape(args.database_url, args.web_replicas, args.bot_workers, imap=args.imap)
    return asyncio.run(
        run_demo(
            state,
            keyring,
            http_port=args.http_port,
            smtp_port=args.smtp_port,
            latency_ms=args.kashflow_latency_ms,
            shape=shape,
            trusted_proxies=settings.trusted_proxies,
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
        database_url=args.database_url,
        role=args.role,
        pdf_hosts=args.pdf_hosts,
        trusted_proxies=args.trusted_proxies,
        allow_relay=",".join(args.allow_relay) if args.allow_relay else None,
    )
    return asyncio.run(run_serve(settings, settings.keyring()))


def _check(args: argparse.Namespace) -> int:
    from app.serve import run_check

    settings = _settings(
        args,
        kashflow_endpoint=args.kashflow_url,
        pdf_hosts=args.pdf_hosts,
        allow_relay=",".join(args.allow_relay) if args.allow_relay else None,
    )
    return asyncio.run(run_check(settings, settings.keyring()))


def _probe(args: argparse.Namespace) -> int:
    from app.probe import run_probe

    if args.wait is not None and not 0 <= args.wait <= 86_400:
        raise ConfigError("--wait takes a number of seconds, up to a day")
    settings = _settings(args, kashflow_endpoint=args.kashflow_url, pdf_hosts=args.pdf_hosts)
    credentials = _credentials_from_env()
    return asyncio.run(run_probe(settings, credentials, args.customer, wait=args.wait))


if __name__ == "__main__":
    sys.exit(main())
