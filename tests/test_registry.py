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
    assert not [c for c in columns if "token" in c or "password" in c or "secret" in c]
