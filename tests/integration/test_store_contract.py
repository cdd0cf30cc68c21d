"""The contract every Store backend passes: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest

from headwater.crypto import SealedUser
from headwater.errors import StoreError
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
    meta: dict[str, object] | None = None,
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
        meta_json=orjson.dumps(meta) if meta is not None else None,
        received_at=received_at,
    )


def json_value(encoded: bytes | None) -> bytes | None:
    """The JSON value of `encoded` in one spelling (sorted keys, no spaces). A store keeps the
    value, not the bytes: PostgreSQL's JSONB normalises key order and whitespace. Comparing this
    form, not parsed objects, keeps `true` apart from `1` and `1.0` apart from `1`."""
    if encoded is None:
        return None
    return orjson.dumps(orjson.loads(encoded), option=orjson.OPT_SORT_KEYS)


def assert_stored_as(got: EventRecord | None, sent: EventRecord) -> None:
    """`got` is `sent` read back: every field equal, `data`/`meta` as JSON values."""
    assert got is not None
    assert json_value(got.data_json) == json_value(sent.data_json)
    assert json_value(got.meta_json) == json_value(sent.meta_json)
    without_json = dataclasses.replace(got, data_json=b"", meta_json=None)
    assert without_json == dataclasses.replace(sent, data_json=b"", meta_json=None)


async def test_append_then_get_round_trips_every_field(store: Store) -> None:
    sealed = SealedUser("k1", b"\x00\x01ciphertext", b"\x09" * 32)
    data: dict[str, object] = {
        "zz": [1, 2, {"b": None}],  # JSONB would list "a" first: compared as values
        "a": {"t": True, "one": 1, "f": 1.5, "big": 2**62, "neg": -3},
        "s": 'é ✓ 😀 "quoted"\n',
    }
    event = make_event(data=data, user=sealed, sender_id="order-1", meta={"ip": "10.0.0.1"})
    assert await store.append_events([event]) == 1
    got = await store.get_event(event.internal_id)
    assert_stored_as(got, event)
    assert got is not None and orjson.loads(got.data_json) == data
    assert got.meta_json is not None and orjson.loads(got.meta_json) == {"ip": "10.0.0.1"}
    listed = await store.list_events(EventQuery())
    assert len(listed) == 1
    assert_stored_as(listed[0], event)


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
        assert_stored_as(await second.get_event(event.internal_id), event)
    finally:
        await second.close()


@pytest.mark.parametrize("size", [1, 100, 1000])
async def test_batches_of_many_sizes(store: Store, size: int) -> None:
    assert await store.append_events([make_event() for _ in range(size)]) == size
    assert await store.count_events() == size


async def test_a_batch_that_fails_part_way_stores_nothing(store: Store) -> None:
    kept = make_event()
    await store.append_events([kept])
    # An epoch-ms beyond 64 bits cannot be stored by either database; it comes third of four.
    batch = [make_event(), make_event(), make_event(received_at=2**63), make_event()]
    # PostgreSQL reports it as StoreError ("bigint out of range"); sqlite3 raises OverflowError
    # while binding the third row, after the first two were inserted.
    with pytest.raises((StoreError, OverflowError)):
        await store.append_events(batch)
    assert await store.count_events() == 1
    assert all([await store.get_event(e.internal_id) is None for e in batch])
    assert_stored_as(await store.get_event(kept.internal_id), kept)
    # The failure left nothing behind that blocks the next batch.
    assert await store.append_events([make_event(), make_event()]) == 2
    assert await store.count_events() == 3


async def test_an_id_repeated_within_one_batch_is_stored_once_first_wins(store: Store) -> None:
    first = make_event(data={"v": 1})
    again = dataclasses.replace(first, data_json=orjson.dumps({"v": 2}))
    other = make_event()
    assert await store.append_events([first, other, again]) == 2
    got = await store.get_event(first.internal_id)
    assert got is not None and orjson.loads(got.data_json) == {"v": 1}
    assert await store.count_events() == 2


async def test_concurrent_overlapping_appends_store_each_event_once(store: Store) -> None:
    """Retried sends racing each other: batches share ids and list them in opposite orders, the
    pattern that deadlocks two inserting transactions that lock the same keys in different orders.
    Every id is stored exactly once and counted as new by exactly one caller."""
    events = [make_event(f"app/race{i}") for i in range(110)]
    batches: list[list[EventRecord]] = []
    for task in range(24):
        start = (task * 10) % 80  # windows of 40 ids overlapping their neighbours by 30
        window = events[start : start + 40]
        batches.append(window if task % 2 else window[::-1])
    counts = await asyncio.gather(*(store.append_events(batch) for batch in batches))
    stored_ids = {e.internal_id for batch in batches for e in batch}
    assert sum(counts) == len(stored_ids)
    assert await store.count_events() == len(stored_ids)
    listed = await store.list_events(EventQuery(limit=1000))
    assert sorted(e.internal_id for e in listed) == sorted(stored_ids)


# -- many small appends at once: both stores write them together, each caller gets its own outcome


async def test_concurrent_single_appends_fail_alone(store: Store) -> None:
    """One append among many concurrent ones fails: only its caller sees an error."""
    good = [make_event() for _ in range(30)]
    bad = make_event(received_at=2**63)  # no database stores it

    async def append(event: EventRecord) -> int | BaseException:
        try:
            return await store.append_events([event])
        except (StoreError, OverflowError) as exc:
            return exc

    outcomes = await asyncio.gather(*(append(e) for e in [*good[:15], bad, *good[15:]]))
    assert outcomes[:15] == [1] * 15 and outcomes[16:] == [1] * 15
    assert isinstance(outcomes[15], StoreError | OverflowError)
    assert await store.count_events() == 30
    assert await store.get_event(bad.internal_id) is None


async def test_concurrent_single_appends_count_only_their_new_events(store: Store) -> None:
    """Retried sends among new ones: each caller counts the events that it stored; an id sent by
    two callers at once is stored once and counted by one of them."""
    stored = [make_event() for _ in range(5)]
    await store.append_events(stored)
    fresh = [make_event() for _ in range(20)]
    twice = make_event()
    sends = [[e] for e in fresh[:10]] + [[e] for e in stored] + [[twice], [twice]]
    sends += [[e] for e in fresh[10:]]
    counts = await asyncio.gather(*(store.append_events(batch) for batch in sends))
    assert counts[:10] == [1] * 10 and counts[10:15] == [0] * 5 and counts[17:] == [1] * 10
    assert sorted(counts[15:17]) == [0, 1]
    assert await store.count_events() == 5 + 20 + 1
