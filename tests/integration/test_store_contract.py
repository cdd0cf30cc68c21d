"""The contract every Store backend passes: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from headwater.crypto import SealedUser
from headwater.protocol.ids import new_ulid
from headwater.store import EventQuery, EventRecord, Store, open_store


def make_event(
    name: str = "app/test",
    *,
    internal_id: str | None = None,
    received_at: int = 1_700_000_000_000,
    data: dict[str, object] | None = None,
    user: SealedUser | None = None,
    sender_id: str | None = None,
) -> EventRecord:
    internal_id = internal_id or new_ulid()
    return EventRecord(
        internal_id=internal_id,
        id=sender_id or internal_id,
        name=name,
        data_json=orjson.dumps(data or {"n": 1}),
        user=user,
        ts=received_at,
        v="2024-01-01.1",
        meta_json=None,
        received_at=received_at,
    )


async def test_append_then_get_round_trips_every_field(store: Store) -> None:
    sealed = SealedUser("k1", b"\x00\x01ciphertext", b"\x09" * 32)
    event = make_event(data={"a": [1, 2, {"b": None}], "s": "é"}, user=sealed, sender_id="order-1")
    assert await store.append_events([event]) == 1
    got = await store.get_event(event.internal_id)
    assert got is not None
    assert got == event
    assert orjson.loads(got.data_json) == {"a": [1, 2, {"b": None}], "s": "é"}


async def test_get_unknown_event_is_none(store: Store) -> None:
    assert await store.get_event(new_ulid()) is None


async def test_append_is_idempotent_on_internal_id(store: Store) -> None:
    first = make_event(data={"v": 1})
    assert await store.append_events([first]) == 1
    again = make_event(internal_id=first.internal_id, data={"v": 2})
    assert await store.append_events([again, make_event()]) == 1
    got = await store.get_event(first.internal_id)
    assert got is not None and orjson.loads(got.data_json) == {"v": 1}
    assert await store.count_events() == 2


async def test_concurrent_appends_are_all_stored(store: Store) -> None:
    batches = [[make_event(f"app/e{i}") for _ in range(5)] for i in range(40)]
    counts = await asyncio.gather(*(store.append_events(batch) for batch in batches))
    assert counts == [5] * 40
    assert await store.count_events() == 200


async def test_list_is_newest_first_and_pages_with_before_id(store: Store) -> None:
    events = [make_event(received_at=1_700_000_000_000 + i) for i in range(7)]
    await store.append_events(events)
    expected = sorted((e.internal_id for e in events), reverse=True)
    page1 = await store.list_events(EventQuery(limit=3))
    page2 = await store.list_events(EventQuery(limit=3, before_id=page1[-1].internal_id))
    page3 = await store.list_events(EventQuery(limit=3, before_id=page2[-1].internal_id))
    assert [e.internal_id for e in page1 + page2 + page3] == expected


async def test_list_filters_by_name_and_received_window(store: Store) -> None:
    base = 1_700_000_000_000
    await store.append_events(
        [
            make_event("app/a", received_at=base),
            make_event("app/b", received_at=base + 10),
            make_event("app/a", received_at=base + 20),
            make_event("inngest/function.finished", received_at=base + 30),
        ]
    )
    assert {e.received_at for e in await store.list_events(EventQuery(name="app/a"))} == {
        base,
        base + 20,
    }
    window = await store.list_events(
        EventQuery(received_after=base + 10, received_before=base + 30)
    )
    assert [e.received_at for e in window] == [base + 20, base + 10]
    assert all(not e.name.startswith("inngest/") for e in await store.list_events(EventQuery()))
    with_system = await store.list_events(EventQuery(include_system=True))
    assert len(with_system) == 4


async def test_erase_users_by_blind_index(store: Store) -> None:
    target, other = b"\x01" * 32, b"\x02" * 32
    await store.append_events(
        [
            make_event(user=SealedUser("k1", b"ct-a", target)),
            make_event(user=SealedUser("k1", b"ct-b", target)),
            make_event(user=SealedUser("k1", b"ct-c", other)),
            make_event(),
        ]
    )
    assert await store.erase_users(target) == 2
    assert await store.erase_users(target) == 0
    events = await store.list_events(EventQuery())
    erased = [e for e in events if e.user_erased]
    assert len(erased) == 2 and all(e.user is None for e in erased)
    assert sum(1 for e in events if e.user is not None) == 1


async def test_reseal_moves_rows_to_the_new_key(store: Store) -> None:
    old = [make_event(user=SealedUser("old", f"ct-{i}".encode(), None)) for i in range(5)]
    current = make_event(user=SealedUser("new", b"ct-new", None))
    await store.append_events([*old, current])
    assert await store.count_events_sealed_with_other_keys("new") == 5
    first = await store.events_sealed_with_other_keys("new", "", 3)
    rest = await store.events_sealed_with_other_keys("new", first[-1][0], 3)
    todo = first + rest
    assert [row[0] for row in todo] == sorted(e.internal_id for e in old)
    updated = await store.reseal_users(
        [
            (internal_id, SealedUser("new", b"re-" + s.ciphertext, None), s.key_id)
            for internal_id, s in todo
        ]
    )
    assert updated == 5
    assert await store.count_events_sealed_with_other_keys("new") == 0
    # A stale reseal (the row's key changed meanwhile) does nothing.
    stale = await store.reseal_users([(old[0].internal_id, SealedUser("x", b"y", None), "old")])
    assert stale == 0


async def test_reopen_keeps_data_and_migrations_are_idempotent(store_url: str) -> None:
    first = open_store(store_url)
    await first.open()
    event = make_event()
    await first.append_events([event])
    await first.close()
    second = open_store(store_url)
    await second.open()
    try:
        assert await second.get_event(event.internal_id) == event
    finally:
        await second.close()


@pytest.mark.parametrize("size", [1, 100, 1000])
async def test_batches_of_many_sizes(store: Store, size: int) -> None:
    assert await store.append_events([make_event() for _ in range(size)]) == size
    assert await store.count_events() == size
