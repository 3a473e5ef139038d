"""The link registry: listing, revocation (one link and revoke-all), isolation, persistence."""

from __future__ import annotations

import pytest

from permalink.db import Database
from permalink.registry import LinkRegistry, new_link_id
from tests.conftest import OpenDb

T0 = 1_700_000_000


@pytest.fixture
def db(open_db: OpenDb) -> Database:
    return open_db()


@pytest.fixture
def registry(db: Database) -> LinkRegistry:
    return LinkRegistry(db)


async def mint(
    registry: LinkRegistry,
    account: str = "acme",
    *,
    code: str = "CUST01",
    scope: str = "all",
    created: int = T0,
    expires: int | None = None,
) -> str:
    record = await registry.add(
        account,
        customer_code=code,
        customer_name=f"Customer {code}",
        scope=scope,
        created=created,
        expires=expires,
        minted_by="settings",
    )
    return record.link_id


async def test_added_link_is_listed_newest_first_with_its_details(registry: LinkRegistry) -> None:
    first = await mint(registry, code="A", created=T0)
    second = await mint(registry, code="B", scope="unpaid", created=T0 + 10, expires=T0 + 99)
    third = await mint(registry, code="C", scope="invoice:123", created=T0 + 10)

    links = await registry.list("acme", limit=10, offset=0)

    assert [link.link_id for link in links] == [third, second, first]
    assert links[1].customer_code == "B"
    assert links[1].customer_name == "Customer B"
    assert links[1].scope == "unpaid"
    assert links[1].expires == T0 + 99
    assert links[1].minted_by == "settings"
    assert (links[1].opens, links[1].last_opened, links[1].revoked_at) == (0, None, None)
    assert await registry.count("acme") == 3


async def test_list_pages_with_limit_and_offset(registry: LinkRegistry) -> None:
    ids = [await mint(registry, created=T0 + i) for i in range(5)]

    page_one = await registry.list("acme", limit=2, offset=0)
    page_two = await registry.list("acme", limit=2, offset=2)
    page_three = await registry.list("acme", limit=2, offset=4)

    newest_first = ids[::-1]
    assert [r.link_id for r in page_one + page_two + page_three] == newest_first


async def test_generated_link_ids_are_random_hex_not_sequential(registry: LinkRegistry) -> None:
    ids = {await mint(registry, created=T0 + i) for i in range(20)}
    assert len(ids) == 20
    for link_id in ids:
        assert len(link_id) == 32
        int(link_id, 16)
    assert len({link_id[:8] for link_id in ids}) == 20


async def test_a_given_link_id_is_kept_and_cannot_be_registered_twice(
    registry: LinkRegistry,
) -> None:
    link_id = new_link_id()
    record = await registry.add(
        "acme",
        customer_code="C1",
        customer_name="C One",
        scope="all",
        created=T0,
        minted_by="cli",
        link_id=link_id,
    )
    assert record.link_id == link_id
    with pytest.raises(ValueError, match="already registered"):
        await registry.add(
            "acme",
            customer_code="C1",
            customer_name="C One",
            scope="all",
            created=T0,
            minted_by="cli",
            link_id=link_id,
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scope": "everything"}, "scope"),
        ({"scope": "invoice:abc"}, "scope"),
        ({"minted_by": "someone"}, "minted_by"),
        ({"link_id": "1"}, "hex"),
        ({"customer_code": ""}, "customer"),
        ({"expires": T0 - 1}, "expire"),
    ],
)
async def test_bad_link_rows_are_refused(
    registry: LinkRegistry, changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "customer_code": "C1",
        "customer_name": "C One",
        "scope": "all",
        "created": T0,
        "minted_by": "bot",
    }
    with pytest.raises(ValueError, match=message):
        await registry.add("acme", **{**fields, **changes})  # type: ignore[arg-type]
    assert await registry.count("acme") == 0


async def test_account_names_are_case_insensitive(registry: LinkRegistry) -> None:
    link_id = await mint(registry, "Acme.Ltd")
    record = await registry.get("ACME.LTD", link_id)
    assert record is not None
    assert record.account == "acme.ltd"
    assert await registry.count("acme.ltd") == 1


async def test_revoke_refuses_that_link_and_only_that_link(registry: LinkRegistry) -> None:
    kept = await mint(registry, code="KEEP")
    gone = await mint(registry, code="GONE")

    assert await registry.revoke("acme", gone, now=T0 + 5) is True

    assert await registry.is_revoked(gone, "acme", T0) is True
    assert await registry.is_revoked(kept, "acme", T0) is False
    record = await registry.get("acme", gone)
    assert record is not None
    assert record.revoked_at == T0 + 5
    assert record.status(T0 + 6) == "revoked"
    # A second revoke changes nothing and says so.
    assert await registry.revoke("acme", gone) is False


async def test_status_tells_expired_from_active(registry: LinkRegistry) -> None:
    link_id = await mint(registry, expires=T0 + 60)
    record = await registry.get("acme", link_id)
    assert record is not None
    assert record.status(T0 + 59) == "active"
    assert record.status(T0 + 60) == "expired"


async def test_revoke_all_kills_registered_and_unregistered_older_links(
    registry: LinkRegistry,
) -> None:
    old = await mint(registry, created=T0)
    already = await mint(registry, created=T0 + 1)
    await registry.revoke("acme", already, now=T0 + 2)

    revoked = await registry.revoke_all("acme", T0 + 100)

    assert revoked == 1  # ``already`` was revoked before
    assert await registry.is_revoked(old, "acme", T0) is True
    # A link the registry never saw, issued before the cut-off, is refused too.
    assert await registry.is_revoked(new_link_id(), "acme", T0 + 99) is True
    # Links issued at or after the cut-off still work: fresh links right after revoke-all.
    assert await registry.is_revoked(new_link_id(), "acme", T0 + 100) is False
    fresh = await mint(registry, created=T0 + 100)
    assert await registry.is_revoked(fresh, "acme", T0 + 100) is False
    record = await registry.get("acme", old)
    assert record is not None and record.revoked_at == T0 + 100
    assert await registry.revoked_before("acme") == T0 + 100


async def test_revoke_all_cut_off_never_moves_back(registry: LinkRegistry) -> None:
    await registry.revoke_all("acme", T0 + 100)
    await registry.revoke_all("acme", T0 + 50)  # a clock stepped back
    assert await registry.revoked_before("acme") == T0 + 100
    assert await registry.is_revoked(new_link_id(), "acme", T0 + 75) is True


async def test_accounts_cannot_see_or_revoke_each_others_links(registry: LinkRegistry) -> None:
    theirs = await mint(registry, "beta", code="B1")
    ours = await mint(registry, "acme", code="A1")

    assert await registry.get("acme", theirs) is None
    assert [r.link_id for r in await registry.list("acme", limit=10, offset=0)] == [ours]
    assert await registry.count("beta") == 1
    assert await registry.revoke("acme", theirs) is False
    assert await registry.is_revoked(theirs, "beta", T0) is False

    await registry.revoke_all("acme", T0 + 100)

    assert await registry.is_revoked(theirs, "beta", T0) is False
    assert await registry.is_revoked(new_link_id(), "beta", T0) is False
    record = await registry.get("beta", theirs)
    assert record is not None and record.revoked_at is None
    # A link id revoked by one account is not revoked under another account's name.
    await registry.revoke("beta", theirs)
    assert await registry.is_revoked(theirs, "acme", T0 + 200) is False


async def test_record_open_counts_openings(registry: LinkRegistry) -> None:
    link_id = await mint(registry)
    assert await registry.record_open(link_id, T0 + 10) is True
    assert await registry.record_open(link_id, T0 + 20) is True
    assert await registry.record_open(new_link_id(), T0 + 20) is False

    record = await registry.get("acme", link_id)
    assert record is not None
    assert (record.opens, record.last_opened) == (2, T0 + 20)


async def test_links_and_revocations_survive_a_restart(open_db: OpenDb) -> None:
    registry = LinkRegistry(open_db())
    kept = await mint(registry, created=T0 + 200)
    gone = await mint(registry, created=T0 + 200)
    await registry.revoke("acme", gone, now=T0 + 300)
    await registry.revoke_all("acme", T0 + 150)
    await registry.record_open(kept, T0 + 400)

    reopened = LinkRegistry(open_db())

    assert await reopened.count("acme") == 2
    assert await reopened.is_revoked(gone, "acme", T0 + 200) is True
    assert await reopened.is_revoked(kept, "acme", T0 + 200) is False
    assert await reopened.is_revoked(new_link_id(), "acme", T0 + 149) is True
    record = await reopened.get("acme", kept)
    assert record is not None and record.opens == 1


async def test_registry_holds_no_token_or_credential_columns(
    db: Database, registry: LinkRegistry
) -> None:
    await mint(registry)
    columns = db.call(
        lambda conn: [
            row["name"]
            for row in conn.all(
                "SELECT column_name AS name FROM information_schema.columns"
                " WHERE table_name = 'links'"
                if conn.dialect.name == "postgresql"
                else "SELECT name FROM pragma_table_info('links')"
            )
        ]
    )
    assert "customer_code" in columns
    # password_mark is a keyed fingerprint, never the password (see test_password_marks).
    kept = [c for c in columns if c != "password_mark"]
    assert not [c for c in kept if "token" in c or "password" in c or "secret" in c]


async def test_a_customers_links_are_listed_with_their_id_and_password_mark(
    registry: LinkRegistry,
) -> None:
    other = await mint(registry, code="OTHER")
    first = await registry.add(
        "acme",
        customer_code="DUNE01",
        customer_name="Dunes & Daughters",
        scope="unpaid",
        created=T0,
        minted_by="settings",
        customer_id=42,
        password_mark=b"\x01\x01" + bytes(16),
    )
    second = await mint(registry, code="DUNE01", created=T0 + 5)
    links = await registry.for_customer("acme", "DUNE01")
    assert [r.link_id for r in links] == [second, first.link_id]
    assert (links[1].customer_id, links[1].password_mark) == (42, b"\x01\x01" + bytes(16))
    assert (links[0].customer_id, links[0].password_mark) == (None, None)
    assert other not in [r.link_id for r in links]
    assert await registry.for_customer("beta", "DUNE01") == []


async def _marked(registry: LinkRegistry, mark: bytes | None, **fields: object) -> str:
    record = await registry.add(
        "acme",
        customer_code=str(fields.get("code", "C1")),
        customer_name="C",
        scope="all",
        created=int(str(fields.get("created", T0))),
        expires=fields.get("expires"),  # type: ignore[arg-type]
        minted_by="bot",
        password_mark=mark,
    )
    return record.link_id


async def test_live_links_are_counted_and_found_by_password_mark(registry: LinkRegistry) -> None:
    old, new = b"\x01\x01" + b"o" * 16, b"\x01\x01" + b"n" * 16
    broken = [await _marked(registry, old, code=f"C{n}") for n in range(3)]
    await _marked(registry, new)
    unmarked = await _marked(registry, None)
    gone = await _marked(registry, old)
    await registry.revoke("acme", gone, now=T0 + 1)
    await _marked(registry, old, expires=T0 + 10)  # expired by T0 + 20

    assert await registry.active_marks("acme", T0 + 20) == {old: 3, new: 1, None: 1}
    found = await registry.active_with_marks("acme", [old], T0 + 20)
    assert [r.link_id for r in found] == broken
    with_unmarked = await registry.active_with_marks("acme", [old, None], T0 + 20)
    assert {r.link_id for r in with_unmarked} == {*broken, unmarked}
    assert await registry.active_with_marks("acme", [], T0 + 20) == []

    assert await registry.revoke_many("acme", [*broken, gone], now=T0 + 30) == 3
    assert await registry.active_marks("acme", T0 + 40) == {new: 1, None: 1}
    assert await registry.revoke_many("beta", [unmarked], now=T0 + 30) == 0


async def test_a_revocation_can_be_undone_only_recently_and_not_past_a_cut_off(
    registry: LinkRegistry,
) -> None:
    link_id = await mint(registry, created=T0)
    await registry.revoke("acme", link_id, now=T0 + 100)
    assert await registry.restore("acme", link_id, revoked_since=T0 + 101) is False
    assert await registry.restore("beta", link_id, revoked_since=T0) is False
    assert await registry.restore("acme", link_id, revoked_since=T0 + 50) is True
    assert await registry.is_revoked(link_id, "acme", T0) is False
    record = await registry.get("acme", link_id)
    assert record is not None and record.status(T0 + 200) == "active"
    # Revoke-all stops every older link whatever its row says: no undo brings one back.
    await registry.revoke("acme", link_id, now=T0 + 300)
    await registry.revoke_all("acme", T0 + 400)
    assert await registry.restore("acme", link_id, revoked_since=T0 + 200) is False
    assert await registry.is_revoked(link_id, "acme", T0) is True
