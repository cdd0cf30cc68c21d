"""The store's side of flow control, on SQLite and PostgreSQL: claims under concurrency limits and
throttles, and runs created under rate limits, singletons and groups (the pure decisions are in
tests/unit/test_flow.py; the end-to-end properties in test_flow_control.py)."""

from __future__ import annotations

import dataclasses
import os

from headwater import Headwater
from headwater.crypto import KeyRing, StaticKeys, generate_key
from headwater.engine.event_log import EventLog
from headwater.engine.registry import FunctionRegistry
from headwater.engine.triggers import RunPlanner
from headwater.flow.rules import (
    ConcurrencySlot,
    GroupKind,
    GroupRule,
    RateLimitRule,
    RunFlow,
    SingletonMode,
    SingletonRule,
    ThrottleRule,
)
from headwater.store import Store
from headwater.store.runs import NewRun, RunStatus, WaitKind, WaitRecord
from tests.integration.test_store_runs_contract import DAY, LEASE, T0, claim_all, make_run


def with_flow(run: NewRun, **flow: object) -> NewRun:
    return dataclasses.replace(run, flow=RunFlow(**flow))  # type: ignore[arg-type]


async def test_a_key_at_its_limit_holds_its_items_back_and_frees_them_in_order(
    store: Store,
) -> None:
    slot = ConcurrencySlot("f:app-fn:a", 1)
    busy = [with_flow(make_run(created_at=T0 + i), concurrency=(slot,)) for i in range(4)]
    other = with_flow(make_run(created_at=T0 + 10), concurrency=(ConcurrencySlot("f:app-fn:b", 1),))
    await store.create_runs([*busy, other])
    first = await claim_all(store, "w", T0 + 100)
    assert [item.run_id for item in first] == [busy[0].run_id, other.run_id]
    # Nothing more while the key is busy, however often we ask (its items are set aside)...
    assert await claim_all(store, "w", T0 + 200) == []
    assert await claim_all(store, "w", T0 + 300) == []
    # ... and the next one, in queue order, once its slot is free.
    await store.finish_run(busy[0].run_id, first[0].item_id, "w", RunStatus.COMPLETED, T0 + 400)
    (second,) = await claim_all(store, "w", T0 + 500)
    assert second.run_id == busy[1].run_id
    # A lease that expires (a crashed worker) frees its slot: its item is claimed again, and the
    # key's later items still wait their turn.
    again = await claim_all(store, "w2", T0 + 500 + LEASE)
    assert [item.run_id for item in again] == [busy[1].run_id, other.run_id]


async def test_two_slots_must_both_be_free(store: Store) -> None:
    account = ConcurrencySlot("a:tenant", 1)
    runs = [
        with_flow(
            make_run(created_at=T0 + i), concurrency=(ConcurrencySlot(f"f:fn:{i}", 5), account)
        )
        for i in range(3)
    ]
    await store.create_runs(runs)
    assert [i.run_id for i in await claim_all(store, "w", T0 + 100)] == [runs[0].run_id]


async def test_an_item_past_its_start_deadline_is_claimed_despite_the_limit(store: Store) -> None:
    slot = ConcurrencySlot("f:app-fn:x", 1)
    runs = [
        with_flow(make_run(created_at=T0 + i), concurrency=(slot,), start_deadline=T0 + 1_000)
        for i in range(2)
    ]
    await store.create_runs(runs)
    assert len(await claim_all(store, "w", T0 + 100)) == 1
    assert await claim_all(store, "w", T0 + 200) == []
    (late,) = await claim_all(store, "w", T0 + 1_000)  # handed over to be cancelled
    assert late.run_id == runs[1].run_id


async def test_a_started_item_past_its_deadline_is_claimed_despite_the_limit(store: Store) -> None:
    # Given a key at its limit of 1, held by the second of three runs, while the first, already
    # started, is due again before its (finish) deadline
    slot = ConcurrencySlot("f:app-fn:d", 1)
    runs = [with_flow(make_run(created_at=T0 + i), concurrency=(slot,)) for i in range(3)]
    await store.create_runs(runs)
    (first,) = await claim_all(store, "w", T0 + 10)
    assert await store.reschedule(first.item_id, "w", T0 + 500, 0, deadline=T0 + 1_000)
    (second,) = await claim_all(store, "w", T0 + 20)
    assert second.run_id == runs[1].run_id and not second.overdue
    # When it is due, it waits for the slot like the others ...
    assert await claim_all(store, "w", T0 + 500) == []
    # ... but at its deadline it is handed over whatever the limit, to be cancelled, ahead of
    # the third run queued before it
    (late,) = await claim_all(store, "w", T0 + 1_000)
    assert (late.run_id, late.overdue) == (runs[0].run_id, True)


async def test_a_run_parked_until_its_deadline_is_claimed_then_despite_the_limit(
    store: Store,
) -> None:
    slot = ConcurrencySlot("f:app-fn:p", 1)
    runs = [with_flow(make_run(created_at=T0 + i), concurrency=(slot,)) for i in range(2)]
    await store.create_runs(runs)
    (first,) = await claim_all(store, "w", T0 + 10)
    # A wait cut short by the run's deadline
    wait = WaitRecord(
        wait_id=f"{runs[0].run_id}:reply",
        run_id=runs[0].run_id,
        kind=WaitKind.STEP,
        event_name="app/reply",
        expression=None,
        created_at=T0 + 10,
        expires_at=T0 + 1_000,
        step_id="reply",
        step_name="reply",
        match_from=T0 + 10,
    )
    assert await store.park_for_wait(first.item_id, "w", wait, deadline=T0 + 1_000)
    (second,) = await claim_all(store, "w", T0 + 20)
    assert second.run_id == runs[1].run_id
    (late,) = await claim_all(store, "w", T0 + 1_000)
    assert (late.run_id, late.overdue) == (runs[0].run_id, True)


async def test_a_throttled_start_is_pushed_to_its_next_allowed_time(store: Store) -> None:
    rule = ThrottleRule("t:app-fn:", limit=1, period_ms=1_000)
    runs = [with_flow(make_run(created_at=T0 + i), throttle=rule) for i in range(3)]
    await store.create_runs(runs)
    assert len(await claim_all(store, "w", T0 + 10)) == 1
    assert await claim_all(store, "w", T0 + 20) == []
    assert await store.next_due_at() == T0 + 1_010  # delayed, not dropped
    (second,) = await claim_all(store, "w", T0 + 1_010)
    assert second.run_id == runs[1].run_id


async def test_priority_orders_due_items(store: Store) -> None:
    plain = make_run(created_at=T0)
    urgent = with_flow(make_run(created_at=T0 + 50), priority_ms=60_000)
    await store.create_runs([plain, urgent])
    items = await store.claim_due("w", T0 + 100, LEASE, 1)
    assert [item.run_id for item in items] == [urgent.run_id]


async def test_a_rate_limit_skips_runs_beyond_it(store: Store) -> None:
    rule = RateLimitRule("r:app-fn:", limit=2, period_ms=10_000)
    runs = [with_flow(make_run(created_at=T0 + i * 1_000), rate_limit=rule) for i in range(4)]
    records = await store.create_runs(runs)
    assert [r.status for r in records] == [RunStatus.QUEUED] * 2 + [RunStatus.SKIPPED] * 2
    assert {r.reason for r in records[2:]} == {"rate limited"}
    later = with_flow(make_run(created_at=T0 + 10_001), rate_limit=rule)
    assert (await store.create_runs([later]))[0].status is RunStatus.QUEUED


async def test_a_singleton_skips_or_replaces_the_active_run(store: Store) -> None:
    skip = SingletonRule("u1", SingletonMode.SKIP)
    first, second = (with_flow(make_run(created_at=T0 + i), singleton=skip) for i in range(2))
    records = await store.create_runs([first])
    records += await store.create_runs([second])
    assert [r.status for r in records] == [RunStatus.QUEUED, RunStatus.SKIPPED]
    cancel = SingletonRule("u2", SingletonMode.CANCEL)
    old, new = (with_flow(make_run(created_at=T0 + i), singleton=cancel) for i in range(2))
    await store.create_runs([old])
    await store.create_runs([new])
    replaced = await store.get_run(old.run_id)
    assert replaced is not None and replaced.status is RunStatus.CANCELLED
    assert replaced.reason == f"singleton: replaced by run {new.run_id}"


async def test_a_batch_gathers_events_into_one_run_until_full(store: Store) -> None:
    rule = GroupRule(GroupKind.BATCH, "k", timeout_ms=5_000, max_size=2)
    runs = [with_flow(make_run(created_at=T0 + i), group=rule) for i in range(3)]
    records = [(await store.create_runs([run]))[0] for run in runs]
    assert records[0].run_id == records[1].run_id != records[2].run_id
    batch = await store.get_run(records[0].run_id)
    assert batch is not None and batch.event_ids == runs[0].event_ids + runs[1].event_ids
    # The full batch is due at once; the new one at its timeout.
    assert [i.run_id for i in await claim_all(store, "w", T0 + 2)] == [records[0].run_id]
    assert await store.next_due_at() == T0 + 2 + 5_000


async def test_a_debounce_keeps_the_last_event_and_moves_the_start(store: Store) -> None:
    rule = GroupRule(GroupKind.DEBOUNCE, "k", period_ms=1_000)
    runs = [with_flow(make_run(created_at=T0 + i * 100), group=rule) for i in range(3)]
    records = [(await store.create_runs([run]))[0] for run in runs]
    assert len({r.run_id for r in records}) == 1
    run = await store.get_run(records[0].run_id)
    assert run is not None and run.event_ids == runs[2].event_ids
    assert await store.next_due_at() == T0 + 200 + 1_000
    assert await claim_all(store, "w", T0 + 1_100) == []
    assert len(await claim_all(store, "w", T0 + 1_200)) == 1
    # Claimed: the next event opens a new group.
    later = with_flow(make_run(created_at=T0 + 1_300), group=rule)
    assert (await store.create_runs([later]))[0].run_id == later.run_id


async def test_pruning_forgets_old_windows_and_ended_singletons(store: Store) -> None:
    rule = RateLimitRule("r:app-fn:", limit=1, period_ms=1_000)
    await store.create_runs([with_flow(make_run(created_at=T0), rate_limit=rule)])
    skip = SingletonRule("u", SingletonMode.SKIP)
    holder = with_flow(make_run(created_at=T0), singleton=skip)
    await store.create_runs([holder])
    await store.prune_state(before=T0)  # nothing is older than T0; the holder is active
    blocked = with_flow(make_run(created_at=T0 + 1), rate_limit=rule)
    assert (await store.create_runs([blocked]))[0].status is RunStatus.SKIPPED
    await store.finish_run(holder.run_id, None, None, RunStatus.COMPLETED, T0 + 2)
    await store.prune_state(before=T0 + 10)
    # The window was forgotten: the same rule admits again at once (past its period anyway).
    again = with_flow(make_run(created_at=T0 + 3), rate_limit=rule)
    assert (await store.create_runs([again]))[0].status is RunStatus.QUEUED
    # The ended holder's key went too: a new singleton run takes it.
    taker = with_flow(make_run(created_at=T0 + 4), singleton=skip)
    assert (await store.create_runs([taker]))[0].status is RunStatus.QUEUED


async def test_pruning_keeps_each_functions_latest_cron_tick(store: Store) -> None:
    for tick in (T0, T0 + 60_000, T0 + 120_000):
        assert await store.claim_cron_tick("app-cron", tick)
    assert await store.claim_cron_tick("app-other", T0)
    await store.prune_state(before=T0 + 1_000_000)
    assert await store.last_cron_tick("app-cron") == T0 + 120_000
    assert await store.last_cron_tick("app-other") == T0  # its only, so its latest, tick stays
    assert await store.claim_cron_tick("app-cron", T0)  # forgotten: the row could be written again


async def test_an_idempotency_expression_holds_its_value_for_24_hours_from_the_run(
    store: Store,
) -> None:
    # Given a function run once per `event.data.orderId`, its events planned and stored as the
    # server does, at times we choose
    hw = Headwater(app_id="shop")

    @hw.function(id="once", trigger=hw.on_event("shop/order"), idempotency="event.data.orderId")
    async def once(ctx: object) -> None: ...

    keys = StaticKeys(KeyRing([generate_key("test")], os.urandom(32)))
    log = EventLog(store, keys, planner=RunPlanner(FunctionRegistry(hw.functions)))

    async def status_at(at: int, order: str) -> RunStatus:
        (event_id,) = await log.append(
            [{"name": "shop/order", "data": {"orderId": order}}], received_at=at
        )
        (run,) = await store.list_runs_for_event(event_id)
        return run.status

    # When the same value comes again within a day of the first run, then a day after it
    assert await status_at(T0, "o-1") is RunStatus.QUEUED
    assert await status_at(T0 + 1, "o-2") is RunStatus.QUEUED  # another value, its own key
    assert await status_at(T0 + DAY - 1, "o-1") is RunStatus.SKIPPED
    # Then the key expired exactly 24 h after the run that took it: the value runs again, and
    # holds the key for a day from then
    assert await status_at(T0 + DAY, "o-1") is RunStatus.QUEUED
    assert await status_at(T0 + 2 * DAY - 1, "o-1") is RunStatus.SKIPPED
