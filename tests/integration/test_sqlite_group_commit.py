"""SQLite's group commit: plain appends waiting together are written by one INSERT, and any
surprise (an id already stored, a failing row) falls back to one savepoint per job, so each caller
gets exactly the outcome it would have had alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import headwater.store.sqlite as sqlite_store
from headwater.crypto import SealedUser
from headwater.errors import StoreError
from headwater.store import EventRecord
from headwater.store.sqlite import SQLiteStore
from tests.integration.test_store_contract import make_event


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(f"sqlite:///{tmp_path / 'headwater.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, bool | None]]:
    """(path, jobs, outcome) of each write path the writer takes."""
    seen: list[tuple[str, int, bool | None]] = []
    alone = sqlite_store._append_batch_alone
    merged = sqlite_store._append_merged

    def spy_alone(connection: sqlite3.Connection, batch: list[Any]) -> bool:
        stored = alone(connection, batch)
        seen.append(("alone", len(batch), stored))
        return stored

    def spy_merged(connection: sqlite3.Connection, jobs: list[Any], **kwargs: Any) -> None:
        seen.append(("merged", len(jobs), None))
        merged(connection, jobs, **kwargs)

    monkeypatch.setattr(sqlite_store, "_append_batch_alone", spy_alone)
    monkeypatch.setattr(sqlite_store, "_append_merged", spy_merged)
    return seen


async def together(store: SQLiteStore, *writes: Callable[[], Any]) -> list[Any]:
    """Run the writes so that the writer takes them all in one batch: it is kept busy with a job
    that waits until all of them are queued. Returns each outcome (a result or an exception)."""
    gate = threading.Event()
    started = threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        started.set()
        gate.wait(10)

    held = asyncio.ensure_future(store._write(hold))
    await asyncio.to_thread(started.wait, 10)
    tasks = [asyncio.ensure_future(write()) for write in writes]
    await asyncio.sleep(0.05)  # every task has queued its job
    gate.set()
    await held
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def append(store: SQLiteStore, *events: EventRecord) -> Callable[[], Any]:
    return lambda: store.append_events(list(events))


async def test_small_batch_of_appends_is_one_autocommit_insert(
    store: SQLiteStore, calls: list[tuple[str, int, bool | None]]
) -> None:
    events = [make_event() for _ in range(40)]
    assert await together(store, *(append(store, e) for e in events)) == [1] * 40
    assert ("alone", 40, True) in calls and not any(c[0] == "merged" for c in calls)
    assert await store.count_events() == 40


async def test_large_batch_of_appends_is_one_transaction(
    store: SQLiteStore, calls: list[tuple[str, int, bool | None]]
) -> None:
    sends = [[make_event() for _ in range(3)] for _ in range(50)]  # 150 rows
    outcomes = await together(store, *(append(store, *batch) for batch in sends))
    assert outcomes == [3] * 50
    assert ("alone", 50, False) in calls and ("merged", 50, None) in calls
    assert await store.count_events() == 150


async def test_an_id_already_stored_falls_back_and_counts_per_caller(
    store: SQLiteStore, calls: list[tuple[str, int, bool | None]]
) -> None:
    old = make_event()
    await store.append_events([old])
    new = [make_event() for _ in range(10)]
    outcomes = await together(store, *(append(store, e) for e in [*new[:5], old, *new[5:]]))
    assert outcomes == [1] * 5 + [0] + [1] * 5
    assert ("alone", 11, False) in calls and ("merged", 11, None) in calls
    assert await store.count_events() == 11


async def test_a_failing_append_fails_alone(
    store: SQLiteStore, calls: list[tuple[str, int, bool | None]]
) -> None:
    good = [make_event() for _ in range(10)]
    bad = make_event(received_at=2**63)
    outcomes = await together(store, *(append(store, e) for e in [*good[:3], bad, *good[3:]]))
    assert outcomes[:3] == [1] * 3 and outcomes[4:] == [1] * 7
    assert isinstance(outcomes[3], StoreError)
    assert await store.count_events() == 10


async def test_other_writes_split_the_appends_and_keep_their_order(
    store: SQLiteStore, calls: list[tuple[str, int, bool | None]]
) -> None:
    target = b"\x05" * 32
    before = [make_event(user=SealedUser("k1", b"ct", target)) for _ in range(3)]
    after = [make_event(user=SealedUser("k1", b"ct", target)) for _ in range(2)]
    outcomes = await together(
        store,
        *(append(store, e) for e in before),
        lambda: store.erase_users(target),
        *(append(store, e) for e in after),
    )
    assert outcomes == [1, 1, 1, 3, 1, 1]
    assert ("merged", 3, None) in calls and ("merged", 2, None) in calls
    for event in before:
        got = await store.get_event(event.internal_id)
        assert got is not None and got.user_erased
    for event in after:
        got = await store.get_event(event.internal_id)
        assert got is not None and not got.user_erased and got.user is not None
