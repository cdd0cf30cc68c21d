"""Synced apps on SQLite and PostgreSQL (store/apps.py): a sync that changes the app rewrites it
and its functions; the same sync again records only when it happened."""

from __future__ import annotations

import dataclasses

from headwater.store import Store
from headwater.store.apps import AppFunctionRecord, AppRecord

T0 = 1_700_000_000_000


def make_app(checksum: str, synced_at: int) -> AppRecord:
    return AppRecord(
        "shop", "http://127.0.0.1:3000/api/inngest", "py:v1", "starlette", checksum, T0, synced_at
    )


def make_function(slug: str, synced_at: int) -> AppFunctionRecord:
    return AppFunctionRecord(slug, "shop", b'{"id": "%s"}' % slug.encode(), synced_at)


async def test_a_changed_sync_rewrites_the_app_and_archives_what_it_no_longer_lists(
    store: Store,
) -> None:
    assert await store.sync_app(
        make_app("c1", T0), [make_function("shop-a", T0), make_function("shop-b", T0)]
    )
    changed = dataclasses.replace(make_app("c2", T0 + 10), url="http://127.0.0.1:3001/api/inngest")
    assert await store.sync_app(changed, [make_function("shop-a", T0 + 10)])
    assert await store.list_apps() == [changed]
    assert [f.slug for f in await store.app_functions("shop")] == ["shop-a"]
    archived = await store.app_functions("shop", include_archived=True)
    assert {f.slug: f.archived_at for f in archived} == {"shop-a": None, "shop-b": T0 + 10}


async def test_the_same_sync_again_records_only_its_time(store: Store) -> None:
    # Given an app synced once
    first = make_app("c1", T0)
    assert await store.sync_app(first, [make_function("shop-a", T0)])
    # When the same sync comes again later
    again = dataclasses.replace(first, synced_at=T0 + 5_000)
    modified = await store.sync_app(again, [make_function("shop-a", T0 + 5_000)])
    # Then it is not a change, and only the time of the last sync moves on
    assert modified is False
    assert await store.list_apps() == [dataclasses.replace(first, synced_at=T0 + 5_000)]
    functions = await store.app_functions("shop")
    assert [(f.slug, f.synced_at) for f in functions] == [("shop-a", T0)]
    # And a sync stamped earlier than the last (a slower process) does not move it back
    assert await store.sync_app(dataclasses.replace(first, synced_at=T0 + 1), []) is False
    assert [app.synced_at for app in await store.list_apps()] == [T0 + 5_000]
