"""The core: the product's flows, behind the Gateway, Store and Mailer seams.

One :class:`Core` is built per process by the composition root (``app/``) and handed to
the doors it starts — the web door and the mail bot — which call it rather than doing the
product's steps themselves:

* open a live link: the token opens under the server keyring and is not revoked;
* list what a link (or a request) covers, live from KashFlow;
* build a document: one invoice's PDF, checked, or every invoice in scope merged into one
  — the statement pack, a statement page we render then each invoice with a bookmark
  (:mod:`permalink.statement_pack`); merging runs on the core's one pool of merge threads,
  one build per document at a time (a second request for the same document waits for the
  first), with the KashFlow calls in flight bounded per account across every link;
* what the business set for a client: payment instructions, logo, language
  (:meth:`Core.client_settings`);
* mint a link, registered with its account and a mark of the password it seals, and
  write an existing link's URL again (for "copy") while that password is still current;
* send a message through an account's own relay.

The core knows KashFlow only as a :class:`~permalink.gateway.Gateway`, the state only as a
:class:`~permalink.store.Store` and the relay only as a :class:`~permalink.mailer.Mailer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kashflow.concurrent import calls_at_once
from kashflow.documents import (
    DEFAULT_CONCURRENCY,
    BatchPdfSource,
    check_pdf,
    fetch_documents,
    merge_pdfs,
)
from kashflow.models import CompanyDetails, Credentials, Customer, Invoice
from permalink.accounts import account_key
from permalink.business import BusinessProfile, ClientSettings
from permalink.dnsproof import Checked, TxtLookup, check
from permalink.domains import domain_of
from permalink.gateway import Gateway, KashFlowAccount
from permalink.keyring import Keyring, KeyringSource, keyring_source
from permalink.links import InvalidLink, Link, new_link, open_link, seal
from permalink.mailer import Mailer
from permalink.presentation import open_first
from permalink.registry import LinkRecord, MintedBy
from permalink.relay import Relay, relay_for
from permalink.scopes import Scope, Statement, invoice_in_scope, statement
from permalink.statement_pack import PackParts, build_pack, split_pages
from permalink.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a password mark is made for (with the account after it): see :meth:`Core.password_mark`.
_PASSWORD_MARK = b"kashflow-permalink/api-password/v1\x00"


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """What the core needs to know about the deployment; read once by the root."""

    #: The address clients use (``https://invoices.example.co.uk``): every link is built
    #: from it, never from a request's Host header.
    public_base_url: str
    #: The domain of the Message-IDs the product writes.
    mail_domain: str = "localhost"
    #: KashFlow document fetches in flight per account, across every link being built.
    pdf_concurrency: int = DEFAULT_CONCURRENCY
    #: Threads merging PDFs at once (CPU and memory bound; more builds wait their turn).
    merge_workers: int = 2
    relay_timeout: float = 30.0
    #: A PEM bundle relays are checked against instead of the system's (a private CA).
    relay_ca_file: str | None = None
    #: Name servers asked for domain-proof TXT records (empty: the system's resolvers).
    dns_nameservers: tuple[str, ...] = ()
    dns_port: int = 53
    #: The KashFlow accounts (API usernames, lower case) that may use this deployment;
    #: empty lets any account in (a hosted service).
    allowed_accounts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        parts = urlsplit(self.public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "public_base_url must be an absolute http(s) URL, "
                f"e.g. https://invoices.example.co.uk (got {self.public_base_url!r})"
            )
        if parts.query or parts.fragment:
            raise ValueError("public_base_url must not have a query string or fragment")
        object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))
        allowed = frozenset(name.strip().lower() for name in self.allowed_accounts)
        object.__setattr__(self, "allowed_accounts", allowed)
        if not 1 <= self.pdf_concurrency <= 64:
            raise ValueError("pdf_concurrency must be between 1 and 64")
        if not 1 <= self.merge_workers <= 32:
            raise ValueError("merge_workers must be between 1 and 32")


@dataclass(frozen=True, slots=True)
class Minted:
    link: Link
    url: str


class RelayNotReady(ValueError):
    """The account's relay is not configured well enough to send (the message says why)."""


class Core:
    """The product's flows for one process; see the module docstring."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        gateway: Gateway,
        store: Store,
        mailer: Mailer,
        keyring: Keyring | KeyringSource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.store = store
        self.mailer = mailer
        self.clock = clock
        self._keys = keyring_source(keyring)
        self._merge_pool = ThreadPoolExecutor(
            max_workers=config.merge_workers, thread_name_prefix="pdf-merge"
        )
        self._building: dict[tuple[object, ...], asyncio.Future[bytes]] = {}
        self._account_gates: dict[str, asyncio.Semaphore] = {}
        self.dns = TxtLookup(config.dns_nameservers, port=config.dns_port)

    @property
    def keyring(self) -> Keyring:
        """The server keyring as it is now (it may be reloaded while the process runs)."""
        return self._keys()

    def allows(self, account: str) -> bool:
        """Whether this KashFlow account (its API username) may use the deployment."""
        allowed = self.config.allowed_accounts
        return not allowed or account.strip().lower() in allowed

    def close(self) -> None:
        """Stop the merge threads (a build still running finishes first)."""
        self._merge_pool.shutdown(wait=True, cancel_futures=True)

    # -- links ----------------------------------------------------------------------------

    def link_url(self, token: str) -> str:
        """A permalink's absolute URL, on the configured base URL."""
        return f"{self.config.public_base_url}/l/{token}"

    async def open_link(self, token: str, now: float | None = None) -> Link:
        """The link sealed in ``token`` if it opens, has not expired and is not revoked;
        else :class:`~permalink.links.InvalidLink` (``reason`` says which, for logs)."""
        at = int(self.clock() if now is None else now)
        link = open_link(token, self.keyring, now=at)
        if await self.store.links.is_revoked(link.link_id, link.account, link.issued):
            raise InvalidLink("revoked")
        return link

    async def mint(
        self,
        credentials: Credentials,
        customer: Customer,
        scope: Scope,
        *,
        minted_by: MintedBy,
        expires_in: int | None = None,
        now: int | None = None,
        link_id: str | None = None,
    ) -> Minted:
        """Seal a new link, record it in the account's registry, give its URL.

        ``link_id`` (from :func:`permalink.links.new_link_id`) lets a caller record the id
        before the link exists; minting an id already registered raises ``ValueError``.
        """
        issued = int(self.clock()) if now is None else now
        link = new_link(
            credentials,
            customer.id,
            customer.code,
            scope,
            now=issued,
            expires_in=expires_in,
            link_id=link_id,
        )
        await self.store.links.add(
            credentials.username,
            link_id=link.link_id,
            customer_code=customer.code,
            customer_name=customer.name,
            scope=str(scope),
            created=issued,
            expires=link.expires,
            minted_by=minted_by,
            customer_id=customer.id,
            password_mark=self.password_mark(credentials),
        )
        return Minted(link, self.link_url(seal(link, self.keyring)))

    def password_mark(self, credentials: Credentials) -> bytes:
        """A keyed fingerprint of the account's API password, as the registry keeps it."""
        return self.keyring.fingerprint(
            credentials.password.encode("utf-8"), purpose=self._mark_purpose(credentials)
        )

    def made_with(self, record: LinkRecord, credentials: Credentials) -> bool | None:
        """Whether the link was made with this password; None when that cannot be told (no
        mark: a link from before marks were kept, or from a retired key)."""
        return self.mark_matches(record.password_mark, credentials)

    def mark_matches(self, mark: bytes | None, credentials: Credentials) -> bool | None:
        """Whether ``mark`` is this password's (None: no mark, or its key was retired)."""
        if mark is None:
            return None
        return self.keyring.fingerprint_matches(
            mark, credentials.password.encode("utf-8"), purpose=self._mark_purpose(credentials)
        )

    @staticmethod
    def _mark_purpose(credentials: Credentials) -> bytes:
        return _PASSWORD_MARK + account_key(credentials.username).encode("utf-8")

    def url_again(
        self, record: LinkRecord, credentials: Credentials, customer_id: int | None = None
    ) -> str | None:
        """A URL for a link already made, sealed again from its record and ``credentials``.

        The token differs byte for byte but opens to the same link (same id, scope, issue
        time and expiry), so revoking either stops both. Given only when the record says
        the link was made with this very password (or, for a link from before marks were
        kept, when the caller knows the customer): a link made with an older password is
        broken and is re-issued instead, never quietly brought back.
        """
        if self.made_with(record, credentials) is False:
            return None
        customer = record.customer_id or customer_id
        if customer is None or account_key(credentials.username) != record.account:
            return None
        try:
            link = Link(
                credentials=credentials,
                customer_id=customer,
                customer_code=record.customer_code,
                scope=Scope.parse(record.scope),
                issued=record.created,
                expires=record.expires,
                link_id=record.link_id,
            )
        except ValueError:
            return None  # an id the registry made up (a link minted elsewhere)
        return self.link_url(seal(link, self.keyring))

    # -- KashFlow -------------------------------------------------------------------------

    def kashflow(self, credentials: Credentials) -> KashFlowAccount:
        """The KashFlow account these credentials open (nothing is called yet)."""
        return self.gateway.account(credentials)

    async def statement(
        self, credentials: Credentials, customer_id: int, scope: Scope
    ) -> Statement:
        """Company, customer and the invoices in scope, live and fetched at once."""
        return await statement(self.kashflow(credentials), customer_id, scope)

    async def invoice_document(
        self, credentials: Credentials, customer_id: int, scope: Scope, number: int
    ) -> tuple[CompanyDetails, Invoice, bytes]:
        """One invoice the scope covers, with its company and its checked PDF."""
        account = self.kashflow(credentials)
        async with calls_at_once() as group:
            company = group.create_task(account.company_details())
            invoice = group.create_task(invoice_in_scope(account, customer_id, scope, number))
        async with self._gate(credentials.username):
            pdf = await account.invoice_pdf(number)
        await self.off_loop(check_pdf, pdf)
        return company.result(), invoice.result(), pdf

    async def invoice_detail(
        self, credentials: Credentials, customer_id: int, scope: Scope, number: int
    ) -> Statement:
        """Company, customer and one invoice the scope covers, read with its lines."""
        account = self.kashflow(credentials)
        async with calls_at_once() as group:
            company = group.create_task(account.company_details())
            customer = group.create_task(account.customer_by_id(customer_id))
            invoice = group.create_task(invoice_in_scope(account, customer_id, scope, number))
        return Statement(
            company.result(), customer.result(), Scope("invoice", number), (invoice.result(),)
        )

    async def client_settings(self, account: str, customer_code: str) -> ClientSettings:
        """What the business set for this client: its profile and the client's language."""
        business = self.store.business
        return ClientSettings(
            await business.get(account), await business.customer_language(account, customer_code)
        )

    async def merged_document(self, credentials: Credentials, numbers: Sequence[int]) -> bytes:
        """Every invoice in ``numbers`` merged into one PDF, in that order (no cover).

        Built once at a time per account and list of invoices: a request for a document
        already being built waits for that build instead of starting another.
        """
        key = ("merged", credentials.username.lower(), credentials.password, tuple(numbers))

        async def build() -> bytes:
            return await self.off_loop(merge_pdfs, await self._fetch(credentials, numbers))

        return await self._once(key, build)

    async def statement_pack(
        self,
        credentials: Credentials,
        found: Statement,
        *,
        language: str,
        business: BusinessProfile,
        today: date,
    ) -> bytes:
        """The invoices of ``found`` as a statement pack: the statement page in ``language``
        (unless the business turned it off), then every invoice with its bookmark, in the
        page's order (still to pay first, each newest first). Built once at a time per
        document, like :meth:`merged_document`."""
        invoices = open_first(found.invoices)
        numbers = tuple(i.number for i in invoices)
        key = (
            "pack",
            credentials.username.lower(),
            credentials.password,
            numbers,
            language,
            today,
            business,
        )

        async def build() -> bytes:
            logo = None
            if business.statement_cover and business.has_logo:
                logo = await self.store.business.logo(credentials.username)
            parts = PackParts(
                company=found.company,
                customer=found.customer,
                invoices=invoices,
                pdfs=tuple(await self._fetch_each(credentials, numbers)),
                today=today,
                language=language,
                payment=business.payment,
                logo=logo,
                cover=business.statement_cover,
            )
            return await self.off_loop(build_pack, parts)

        return await self._once(key, build)

    async def _once(self, key: tuple[object, ...], build: Callable[[], Awaitable[bytes]]) -> bytes:
        running = self._building.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            pdf = await build()
        except BaseException as error:
            future.set_exception(error)
            # Nobody else may be waiting; the failure is still reported to this caller.
            future.exception()
            raise
        else:
            future.set_result(pdf)
            return pdf
        finally:
            del self._building[key]

    async def _fetch(self, credentials: Credentials, numbers: Sequence[int]) -> list[bytes]:
        account = self.kashflow(credentials)
        gate = self._gate(credentials.username)
        # A gateway that prints several invoices per call (PDF_BATCH) is asked a batch at
        # a time; any other, an invoice at a time.
        batcher = account if isinstance(account, BatchPdfSource) else None

        class Gated:
            print_batch = batcher.print_batch if batcher is not None else 0

            async def invoice_pdf(self, number: int) -> bytes:
                async with gate:
                    return await account.invoice_pdf(number)

            async def invoices_pdf(self, numbers: Sequence[int]) -> bytes:
                assert batcher is not None  # asked only when print_batch is above 1
                async with gate:
                    return await batcher.invoices_pdf(numbers)

        return await fetch_documents(Gated(), numbers, concurrency=self.config.pdf_concurrency)

    async def _fetch_each(self, credentials: Credentials, numbers: Sequence[int]) -> list[bytes]:
        """One PDF per invoice, as the pack bookmarks each. With batching (PDF_BATCH) a
        batch comes back as one document: one page per invoice is split page by page;
        anything else is fetched again invoice by invoice."""
        documents = await self._fetch(credentials, numbers)
        if len(documents) == len(numbers):
            return documents
        size = -(-len(numbers) // len(documents))
        each: list[bytes] = []
        for index, document in enumerate(documents):
            chunk = list(numbers[index * size : (index + 1) * size])
            pages = await self.off_loop(split_pages, document)
            if len(pages) == len(chunk):
                each += pages
            else:  # a multi-page invoice in the batch: where each begins is unknown
                for number in chunk:
                    each += await self._fetch(credentials, [number])
        return each

    def _gate(self, username: str) -> asyncio.Semaphore:
        key = username.lower()
        gate = self._account_gates.get(key)
        if gate is None:
            gate = self._account_gates[key] = asyncio.Semaphore(self.config.pdf_concurrency)
        return gate

    async def off_loop(self, work: Callable[[Any], T], arg: Any) -> T:
        """PDF work on the core's bounded merge threads, never on the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._merge_pool, work, arg)

    # -- domains --------------------------------------------------------------------------

    async def prove_domain(self, account: str, domain: str) -> Checked:
        """Look for the account's TXT record on ``domain`` and record the proof if found.

        Raises ValueError for something that is not a domain name.
        """
        domains = self.store.domains
        proof = await domains.challenge(account, domain)
        if proof.proved:
            return Checked(True)
        found = await check(self.dns, proof)
        if found.proved:
            await domains.mark_proved(account, proof.domain, "dns")
        return found

    async def unproved_domains(self, account: str, *addresses: str) -> list[str]:
        """The domains of ``addresses`` the account has not proved it controls."""
        missing: list[str] = []
        for address in addresses:
            domain = domain_of(address)
            if (
                domain
                and domain not in missing
                and not await self.store.domains.proved(account, domain)
            ):
                missing.append(domain)
        return missing

    async def settings_sender(self, account: str, saved: str, company_email: str) -> str:
        """The From address of mail the accountant's side sends (a link emailed, a test
        email, a re-issue), or "" if there is none the account may use: its saved sender
        (checked against its proved domains when saved), else KashFlow's company address
        only at a domain the account has proved. That address is whatever the account typed
        into KashFlow, so it could speak for another firm."""
        if saved:
            return saved
        if "@" in company_email and not await self.unproved_domains(account, company_email):
            return company_email
        return ""

    # -- mail -----------------------------------------------------------------------------

    async def relay(self, account: str) -> Relay:
        """The account's relay as saved on the bot page.

        Raises :class:`RelayNotReady` when it is incomplete, and
        :class:`permalink.keyring.SecretUnreadable` when its password no longer opens.
        """
        settings = await self.store.accounts.get(account)
        password = await self.store.accounts.relay_password(account)
        try:
            return relay_for(
                settings,
                password,
                timeout=self.config.relay_timeout,
                ca_file=self.config.relay_ca_file,
            )
        except ValueError as error:
            raise RelayNotReady(str(error)) from None

    async def send_for_account(
        self,
        account: str,
        message: EmailMessage,
        recipients: Sequence[str],
        *,
        sender: str | None = None,
    ) -> None:
        """Send ``message`` to exactly ``recipients`` through the account's own relay.

        ``sender`` is the envelope sender: the account's sender address by default, ``""``
        for the null sender of automatic replies (RFC 3834 section 3.3).
        """
        relay = await self.relay(account)
        if sender is None:
            sender = (await self.store.accounts.get(account)).sender
        await self.mailer.send(relay, message, recipients=list(recipients), sender=sender)


__all__ = ["Core", "CoreConfig", "Minted", "RelayNotReady"]
