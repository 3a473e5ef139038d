"""The ``kashflow-permalink`` command: demo, serve, check, link, keys, revoke, mail,
accounts and probe.

Each command's options for settings come from the table in :mod:`app.config` (one option
and one variable per setting, described in ``--help``); the command's own arguments are
declared here. The settings are read once, logging is set up from them, and then the
command runs. Anything an operator got wrong ends in one line on standard error and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Final

from app import config, logs
from app.config import ConfigError, Settings
from kashflow.errors import KashFlowError, NotFound
from kashflow.models import Credentials
from permalink.keyring import Keyring
from permalink.links import InvalidLink, open_link
from permalink.scopes import Scope

PROG = "kashflow-permalink"
#: The demo's own options that share a setting's name, but not its variable or default
#: (its database, like every command's, is the DATABASE_URL setting).
_DEMO_OWN: Final = ("--state-dir", "--http-port", "--smtp-port")


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the product writes (the state database and its journal, the key file,
    # the demo's outbox and logs) holds secrets or clients' mail: owner only, whatever
    # umask the process was started with.
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = config.load(None, command=args.command, **_given(args))
        logs.configure(settings.log_level, settings.log_format)
        result: int = args.run(args, settings)
        return result
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# -- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Self-service invoice permalinks and a mail bot for KashFlow.",
        epilog=f"Run `{PROG} COMMAND --help` for a command's options. Every setting is an "
        f"option or a {config.ENV_PREFIX}<NAME> environment variable; options win.",
    )
    sub = parser.add_subparsers(
        required=True, metavar="COMMAND", dest="command", help="what to do (each has --help)"
    )

    demo = _command(sub, "demo", "run everything on loopback with a sandbox KashFlow", _demo)
    demo.add_argument(
        "--state-dir",
        default="./var/demo",
        help="where the demo keeps its key, state and outbox; relative to the directory "
        "the command starts in (default: ./var/demo)",
    )
    demo.add_argument(
        "--http-port", type=int, default=8080, help="web port (default 8080; 0 picks a free one)"
    )
    demo.add_argument(
        "--smtp-port", type=int, default=8025, help="mail port (default 8025; 0 picks a free one)"
    )
    demo.add_argument(
        "--kashflow-latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="delay the sandbox adds to each KashFlow call (default 0)",
    )
    demo.add_argument(
        "--web-replicas",
        type=int,
        default=1,
        metavar="N",
        help="web processes to start, each on its own port (default 1)",
    )
    demo.add_argument(
        "--bot-workers",
        type=int,
        default=1,
        metavar="N",
        help="bot processes to start, sharing one port (default 1)",
    )
    demo.add_argument(
        "--imap",
        action="store_true",
        help="also read requests from an IMAP mailbox (Dovecot on loopback)",
    )
    demo.epilog = (
        "The demo's own options (" + ", ".join(_DEMO_OWN) + ") are options only: the "
        f"{config.ENV_PREFIX}<NAME> variables of the same names are for the other commands, "
        "and the demo leaves them aside (saying so)."
    )

    _command(sub, "serve", "run the web door and the mail bot against KashFlow", _serve)
    _command(
        sub,
        "check",
        "check the configuration, key, state, ports, KashFlow and each account's relay",
        _check,
    )

    link = _command(
        sub,
        "link",
        "print a permalink (credentials from KASHFLOW_USERNAME and KASHFLOW_PASSWORD)",
        _link,
    )
    link.add_argument(
        "--customer", required=True, help="the customer's KashFlow code or email address"
    )
    link.add_argument(
        "--scope",
        default="all",
        help="all, unpaid, or invoice:NUMBER[,NUMBER...] (default: all)",
    )
    link.add_argument(
        "--expires", type=float, metavar="DAYS", help="valid for DAYS days (default: no expiry)"
    )

    keys = _command(
        sub, "keys", "manage the server key (the key file in the state directory)", _keys
    )
    keys.add_argument(
        "action",
        choices=["create", "rotate", "reseal", "retire", "list"],
        help="create: make the key file; rotate: add a new current key and seal every stored "
        "secret with it; reseal: seal every stored secret with the current key; retire ID: "
        "drop an old key (links sealed with it stop opening); list: the keys and what "
        "needs them",
    )
    keys.add_argument("key_id", nargs="?", type=int, metavar="ID", help="with retire: the key id")

    revoke = _command(sub, "revoke", "revoke one link, by its URL or its link id", _revoke)
    revoke.add_argument("link", help="the link's URL (or its token), or its link id")

    accounts = _command(sub, "accounts", "operator actions on an account", _accounts)
    accounts.add_argument(
        "action",
        choices=["allow-domain"],
        help="allow-domain: vouch that the account controls a mail domain (instead of its "
        "DNS proof)",
    )
    accounts.add_argument("account", help="the account's KashFlow API username")
    accounts.add_argument("domain", help="the mail domain the account may use")

    probe = _command(
        sub,
        "probe",
        "show how the configured KashFlow behaves, in shape only (no client data); "
        "credentials from KASHFLOW_USERNAME and KASHFLOW_PASSWORD",
        _probe,
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

    mail = sub.add_parser(
        "mail",
        help="list or requeue the mail bot's spooled mail",
        description="List or requeue the mail bot's spooled mail.",
    )
    mail_sub = mail.add_subparsers(
        required=True, metavar="ACTION", dest="mail_action", help="list or requeue"
    )
    listing = _command(
        mail_sub,
        "list",
        "list mail the bot has not answered (parked or waiting to retry)",
        _mail_list,
        reads="mail",
    )
    listing.add_argument(
        "--state",
        choices=["parked", "retry", "queued", "stuck"],
        default="stuck",
        help="parked, retry, queued, or stuck: parked and retry (default)",
    )
    requeue = _command(
        mail_sub,
        "requeue",
        "give parked mail to the bot again (each is answered once)",
        _requeue,
        reads="mail",
    )
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("spool_id", nargs="?", type=int, metavar="ID", help="the message's number")
    which.add_argument("--all-parked", action="store_true", help="every parked message")
    return parser


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    run: object,
    *,
    reads: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand with the options of every setting it reads (``reads``: those of
    another command, for the actions of ``mail``)."""
    parser = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    parser.set_defaults(run=run)
    settings = parser.add_argument_group(
        "settings", f"each also a {config.ENV_PREFIX}<NAME> environment variable; options win"
    )
    for spec in config.specs(reads or name):
        help_text = (
            f"{spec.meta.meaning} Accepts {spec.kind.accepted}. "
            f"Default: {spec.shown_default or 'none'}. Variable: {spec.variable}."
        ).replace("%", "%%")
        if spec.kind.flag:
            settings.add_argument(
                spec.option,
                dest=_dest(spec.name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif spec.kind.repeatable:
            settings.add_argument(
                spec.option,
                dest=_dest(spec.name),
                action="append",
                metavar=spec.kind.metavar,
                help=help_text,
            )
        else:
            settings.add_argument(
                spec.option, dest=_dest(spec.name), metavar=spec.kind.metavar, help=help_text
            )
    return parser


def _dest(name: str) -> str:
    return "setting_" + name


def _given(args: argparse.Namespace) -> dict[str, object]:
    given: dict[str, object] = {}
    for spec in config.specs(args.command):
        value = getattr(args, _dest(spec.name), None)
        # A repeatable option's values are one comma list, as its variable is.
        given[spec.name] = ",".join(value) if isinstance(value, list) else value
    return given


# -- the commands -------------------------------------------------------------------------


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from app.serve import run_serve

    return asyncio.run(run_serve(settings))


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from app.check import run_check

    return asyncio.run(run_check(settings))


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from app import keys

    if args.action != "retire" and args.key_id is not None:
        raise ConfigError(f"keys {args.action} takes no key id")
    if args.action == "create":
        status, lines = 0, keys.create(settings)
    elif args.action == "rotate":
        status, lines = asyncio.run(keys.rotate(settings))
    elif args.action == "reseal":
        status, lines = asyncio.run(keys.reseal(settings))
    elif args.action == "retire":
        if args.key_id is None:
            raise ConfigError("keys retire needs the id of the key to drop (see `keys list`)")
        status, lines = asyncio.run(keys.retire(settings, args.key_id))
    else:
        status, lines = asyncio.run(keys.list_keys(settings))
    print("\n".join(lines))
    return status


def _mail_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.mail import list_mail

    return asyncio.run(list_mail(settings, args.state))


def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    from app.mail import requeue

    return asyncio.run(requeue(settings, None if args.all_parked else args.spool_id))


def _credentials_from_env() -> Credentials:
    username = os.environ.get("KASHFLOW_USERNAME", "")
    password = os.environ.get("KASHFLOW_PASSWORD", "")
    if not username or not password:
        raise ConfigError("set KASHFLOW_USERNAME and KASHFLOW_PASSWORD (the API password)")
    return Credentials(username, password)


def _link(args: argparse.Namespace, settings: Settings) -> int:
    try:
        scope = Scope.parse(args.scope)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
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


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a link by its URL (or token) or its id, on the configured store."""
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
            print(f"revoked link {link_id} of {account}: it no longer opens, from the next request")
        else:
            print(f"link {link_id} of {account} was already revoked")
    finally:
        await close_core(core)
    return 0


def _accounts(args: argparse.Namespace, settings: Settings) -> int:
    """``accounts allow-domain``: the operator vouches that an account controls a domain."""
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


def _probe(args: argparse.Namespace, settings: Settings) -> int:
    from app.probe import run_probe

    if args.wait is not None and not 0 <= args.wait <= 86_400:
        raise ConfigError("--wait takes a number of seconds, up to a day")
    credentials = _credentials_from_env()
    return asyncio.run(run_probe(settings, credentials, args.customer, wait=args.wait))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.demo import Shape, prepare, run_demo

    # A sourced env file of a real deployment must not seem to point the demo at its state.
    aside = [
        config.SPECS[option[2:].replace("-", "_")].variable
        for option in _DEMO_OWN
        if config.SPECS[option[2:].replace("-", "_")].variable in os.environ
    ]
    if aside:
        print(
            f"{PROG} demo: {', '.join(aside)} left aside: the demo takes "
            f"{', '.join(_DEMO_OWN)} as options only",
            file=sys.stderr,
            flush=True,
        )
    if args.web_replicas < 1 or args.bot_workers < 1:
        raise ConfigError("--web-replicas and --bot-workers are at least 1")
    state, keyring = prepare(args.state_dir)
    shape = Shape(settings.database_url, args.web_replicas, args.bot_workers, imap=args.imap)
    # The demo's own processes log as it was asked to.
    child_env = {
        config.SPECS["log_level"].variable: settings.log_level,
        config.SPECS["log_format"].variable: settings.log_format,
    }
    return asyncio.run(
        run_demo(
            state,
            keyring,
            http_port=args.http_port,
            smtp_port=args.smtp_port,
            latency_ms=args.kashflow_latency_ms,
            shape=shape,
            trusted_proxies=settings.trusted_proxies,
            child_env=child_env,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
