"""What only the PostgreSQL backend has: the pool and its URL options, lost connections, migrations
raced by several processes, and the values JSONB refuses."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import orjson
import psycopg
import pytest

from headwater.errors import StoreError
from headwater.store import open_store
from headwater.store.migrations import load_migrations
from headwater.store.postgres import PostgresStore
from tests.integration.test_store_contract import make_event

pytestmark = pytest.mark.postgres


def admin_url(url: str) -> str:
    """The URL of the same database without the per-test options (for out-of-band checks)."""
    return url.split("?", 1)[0]


def schema_of(url: str) -> str:
    options = parse_qs(urlsplit(url).query)["options"][0]
    return options.removeprefix("-csearch_path=")


async def test_pool_options_are_stripped_and_libpq_options_kept(postgres_url: str) -> None:
    app = f"hw-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{postgres_url}&pool_max=2&pool_min=1&application_name={app}")
    await store.open()
    try:
        # Far more concurrent verbs than connections: they queue for the two.
        counts = await asyncio.gather(*(store.append_events([make_event()]) for _ in range(20)))
        assert counts == [1] * 20
        with psycopg.connect(admin_url(postgres_url)) as admin:
            sessions = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchone()
            tables = admin.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'events'"
                " AND table_schema = %s",
                (schema_of(postgres_url),),
            ).fetchall()
        assert sessions is not None and 1 <= sessions[0] <= 2
        assert len(tables) == 1  # `options` (the search path) reached libpq
    finally:
        await store.close()


async def test_verbs_survive_connections_the_server_closed(postgres_url: str) -> None:
    app = f"hw-{uuid.uuid4().hex[:8]}"
    store = open_store(f"{postgres_url}&pool_min=3&application_name={app}")
    await store.open()
    try:
        await asyncio.gather(*(store.count_events() for _ in range(6)))  # fill the pool
        with psycopg.connect(admin_url(postgres_url), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (app,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        event = make_event()
        assert await store.append_events([event]) == 1
        assert await store.get_event(event.internal_id) is not None
        assert await store.count_events() == 1
    finally:
        await store.close()


async def test_processes_opening_at_once_apply_each_migration_once(postgres_url: str) -> None:
    stores = [open_store(postgres_url) for _ in range(6)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        for store in stores:
            assert await store.count_events() == 0
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    with psycopg.connect(postgres_url) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_migrations")]
    assert sorted(versions) == [m.version for m in load_migrations("postgres")]


async def test_json_postgres_cannot_store_is_a_store_error_and_stores_nothing(
    postgres_url: str,
) -> None:
    """JSONB refuses the NUL character (`\\u0000`) that SQLite keeps: the ingest layer has to
    reject such events before they reach this store."""
    store = open_store(postgres_url)
    await store.open()
    try:
        bad = make_event(data={"s": "a\x00b"})
        assert b"\\u0000" in bad.data_json
        with pytest.raises(StoreError, match="0000"):
            await store.append_events([make_event(), bad])
        assert await store.count_events() == 0
        stored = make_event(data={"k": "v"})
        assert await store.append_events([stored]) == 1
        got = await store.get_event(stored.internal_id)
        assert got is not None and orjson.loads(got.data_json) == {"k": "v"}
    finally:
        await store.close()


async def test_open_fails_with_store_error_when_the_server_is_unreachable() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:1/nowhere?pool_timeout=1&connect_timeout=1")
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect"):
        await store.open()
    assert time.monotonic() - started < 10
    await store.close()  # closing a store that never opened is harmless


# -- group commit of appends ----------------------------------------------------------------------


async def test_concurrent_appends_share_statements(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    merged: list[int] = []
    real = store._insert_events_returning

    async def spy(events: list[object]) -> set[str]:
        merged.append(len(events))
        return await real(events)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_insert_events_returning", spy)
    try:
        counts = await asyncio.gather(*(store.append_events([make_event()]) for _ in range(100)))
        assert counts == [1] * 100 and await store.count_events() == 100
        # Two statements at a time at most, the rest waiting and merged: far fewer than 100.
        assert merged and sum(merged) >= 90 and len(merged) <= 10
    finally:
        await store.close()


async def test_a_failing_merged_statement_is_retried_append_by_append(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        bad = make_event(data={"text": "nul \u0000 here"})  # JSONB refuses it
        sends = [[make_event()] for _ in range(20)]
        sends.insert(10, [make_event(), bad])
        outcomes = await asyncio.gather(
            *(store.append_events(batch) for batch in sends), return_exceptions=True
        )
        assert isinstance(outcomes[10], StoreError)
        assert outcomes[:10] == [1] * 10 and outcomes[11:] == [1] * 10
        assert await store.count_events() == 20  # the bad send stored none of its two events
    finally:
        await store.close()


async def test_an_append_cancelled_before_it_is_sent_is_not_stored(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    gate = asyncio.Event()
    real = store._insert_events

    async def held(events: list[object]) -> int:
        await gate.wait()
        return await real(events)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_insert_events", held)
    try:
        first = asyncio.ensure_future(store.append_events([make_event()]))
        second = asyncio.ensure_future(store.append_events([make_event()]))
        for _ in range(5):
            await asyncio.sleep(0)  # both statements (the most at a time) are under way
        third = asyncio.ensure_future(store.append_events([make_event()]))
        await asyncio.sleep(0)  # queued behind them
        third.cancel()
        gate.set()
        assert await first == 1 and await second == 1
        with pytest.raises(asyncio.CancelledError):
            await third
        assert await store.count_events() == 2
    finally:
        await store.close()


async def test_close_waits_for_appends_in_flight(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    appends = [asyncio.ensure_future(store.append_events([make_event()])) for _ in range(30)]
    await asyncio.sleep(0)
    await store.close()
    assert [await a for a in appends] == [1] * 30
    check = PostgresStore(postgres_url)
    await check.open()
    try:
        assert await check.count_events() == 30
    finally:
        await check.close()
