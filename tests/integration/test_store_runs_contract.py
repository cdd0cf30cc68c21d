"""The contract of the run verbs (runs, steps, the queue): the same tests on SQLite and PostgreSQL,
plus concurrent claimers and key claims across PostgreSQL pools."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest

from headwater.errors import StoreError
from headwater.protocol.ids import new_ulid
from headwater.store import Store, open_store
from headwater.store.runs import NewRun, QueueItem, RunStatus, StepRecord
from tests.integration.test_store_contract import json_value, make_event

T0 = 1_700_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
LEASE = 30_000


def make_run(
    function_id: str = "app-fn",
    *,
    event_ids: tuple[str, ...] | None = None,
    created_at: int = T0,
    start_at: int | None = None,
    key: str | None = None,
    expires_at: int | None = None,
) -> NewRun:
    """A run as the engine plans it: a key expires a day after creation unless told otherwise."""
    if key is not None and expires_at is None:
        expires_at = created_at + DAY
    return NewRun(
        run_id=new_ulid(),
        function_id=function_id,
        event_ids=event_ids if event_ids is not None else (new_ulid(),),
        created_at=created_at,
        start_at=start_at if start_at is not None else created_at,
        idempotency_key=key,
        idempotency_expires_at=expires_at,
    )


def make_step(run_id: str, step_id: str, data: object, at: int = T0) -> StepRecord:
    return StepRecord(
        run_id, step_id, f"name-{step_id}", "StepRun", orjson.dumps({"data": data}), at, at + 5
    )


async def claim_all(store: Store, owner: str, now: int, lease_ms: int = LEASE) -> list[QueueItem]:
    return await store.claim_due(owner, now, lease_ms, 1000)


# -- creating and reading runs ----------------------------------------------------------------


async def test_create_then_get_round_trips_in_input_order(store: Store) -> None:
    events = (new_ulid(), new_ulid(), new_ulid())
    batch_run = make_run(event_ids=(events[2], events[0], events[1]))  # not in id order
    single = make_run("other-fn", start_at=T0 + 5_000)
    records = await store.create_runs([batch_run, single])
    assert [r.run_id for r in records] == [batch_run.run_id, single.run_id]
    first = records[0]
    assert first.status is RunStatus.QUEUED
    assert first.event_ids == (events[2], events[0], events[1])
    assert (first.function_id, first.created_at) == ("app-fn", T0)
    assert (first.started_at, first.ended_at, first.output_json, first.reason) == (
        None,
        None,
        None,
        None,
    )
    for record in records:
        assert await store.get_run(record.run_id) == record
    assert await store.get_run(new_ulid()) is None
    assert await store.create_runs([]) == []


async def test_each_queued_run_gets_one_item_due_at_its_start(store: Store) -> None:
    now_run = make_run()
    later = make_run(start_at=T0 + 60_000)
    await store.create_runs([now_run, later])
    claimed = await claim_all(store, "w1", T0, lease_ms=HOUR)
    assert [(i.run_id, i.due_at, i.attempt) for i in claimed] == [(now_run.run_id, T0, 0)]
    claimed = await claim_all(store, "w1", T0 + 60_000)
    assert [(i.run_id, i.due_at, i.attempt) for i in claimed] == [(later.run_id, T0 + 60_000, 0)]


async def test_list_runs_for_event_is_oldest_first(store: Store) -> None:
    event, other = new_ulid(), new_ulid()
    newest = make_run(event_ids=(event,), created_at=T0 + 20)
    oldest = make_run(event_ids=(event,), created_at=T0)
    middle = make_run(event_ids=(other, event, event), created_at=T0 + 10)  # listed twice
    unrelated = make_run(event_ids=(other,), created_at=T0 + 30)
    await store.create_runs([newest, oldest])
    await store.create_runs([middle, unrelated])
    listed = await store.list_runs_for_event(event)
    assert [r.run_id for r in listed] == [oldest.run_id, middle.run_id, newest.run_id]
    assert listed[1].event_ids == (other, event, event)
    assert [r.run_id for r in await store.list_runs_for_event(other)] == [
        middle.run_id,
        unrelated.run_id,
    ]
    assert await store.list_runs_for_event(new_ulid()) == []


async def test_a_retried_create_leaves_the_stored_run_as_it_is(store: Store) -> None:
    run = make_run(key="order-1")
    (created,) = await store.create_runs([run])
    await claim_all(store, "w1", T0)
    (again,) = await store.create_runs([run])
    assert again.status is RunStatus.RUNNING  # the stored run, not a second one
    assert again == await store.get_run(run.run_id)
    assert again.event_ids == created.event_ids
    # No second queue item: after the lease expires there is still one item to claim.
    assert len(await claim_all(store, "w2", T0 + LEASE)) == 1


async def test_the_same_run_id_twice_in_one_call_is_refused(store: Store) -> None:
    run = make_run()
    with pytest.raises(ValueError, match="run_id"):
        await store.create_runs([run, run])
    assert await store.get_run(run.run_id) is None


# -- idempotency keys ----------------------------------------------------------------------------


async def test_a_key_held_within_its_window_skips_the_duplicate(store: Store) -> None:
    first = make_run(key="order-1")
    duplicate = make_run(key="order-1", created_at=T0 + 23 * HOUR)
    (queued,) = await store.create_runs([first])
    (skipped,) = await store.create_runs([duplicate])
    assert queued.status is RunStatus.QUEUED
    assert skipped.status is RunStatus.SKIPPED
    assert skipped.reason == "duplicate event id"
    assert skipped.ended_at == duplicate.created_at and skipped.started_at is None
    assert await store.get_run(duplicate.run_id) == skipped
    # It is linked to its event, and has no queue item.
    assert [r.run_id for r in await store.list_runs_for_event(duplicate.event_ids[0])] == [
        duplicate.run_id
    ]
    claimed = await claim_all(store, "w1", T0 + DAY)
    assert [i.run_id for i in claimed] == [first.run_id]


async def test_keys_are_per_function(store: Store) -> None:
    records = await store.create_runs([make_run("fn-a", key="k"), make_run("fn-b", key="k")])
    assert [r.status for r in records] == [RunStatus.QUEUED, RunStatus.QUEUED]


async def test_an_expired_key_is_claimed_again(store: Store) -> None:
    await store.create_runs([make_run(key="k", created_at=T0)])  # held until T0 + DAY
    at_expiry = make_run(key="k", created_at=T0 + DAY)
    (record,) = await store.create_runs([at_expiry])
    assert record.status is RunStatus.QUEUED
    # The new run now holds the key for its own window.
    (later,) = await store.create_runs([make_run(key="k", created_at=T0 + DAY + HOUR)])
    assert later.status is RunStatus.SKIPPED
    (after,) = await store.create_runs([make_run(key="k", created_at=T0 + 2 * DAY)])
    assert after.status is RunStatus.QUEUED


async def test_a_key_without_expiry_is_held_for_ever(store: Store) -> None:
    await store.create_runs([dataclasses.replace(make_run(key="k"), idempotency_expires_at=None)])
    (record,) = await store.create_runs([make_run(key="k", created_at=T0 + 365 * DAY)])
    assert record.status is RunStatus.SKIPPED


async def test_the_same_key_twice_in_one_call_first_wins(store: Store) -> None:
    runs = [make_run(key="k"), make_run(key="k"), make_run(), make_run(key="k2")]
    records = await store.create_runs(runs)
    assert [r.status for r in records] == [
        RunStatus.QUEUED,
        RunStatus.SKIPPED,
        RunStatus.QUEUED,
        RunStatus.QUEUED,
    ]
    assert [r.run_id for r in records] == [r.run_id for r in runs]
    claimed = await claim_all(store, "w1", T0)
    assert {i.run_id for i in claimed} == {runs[0].run_id, runs[2].run_id, runs[3].run_id}


async def test_a_skipped_run_leaves_the_key_with_its_holder(store: Store) -> None:
    held = make_run(key="k", created_at=T0)
    await store.create_runs([held])
    await store.create_runs([make_run(key="k", created_at=T0 + HOUR, expires_at=T0 + 10 * DAY)])
    # Still held until T0 + DAY (the holder's expiry), not the skipped run's.
    (record,) = await store.create_runs([make_run(key="k", created_at=T0 + DAY)])
    assert record.status is RunStatus.QUEUED


# -- appending events with the runs they start -------------------------------------------------


async def test_append_events_creates_their_runs_once(store: Store) -> None:
    event = make_event()
    run = make_run(event_ids=(event.internal_id,), key="order-1")
    assert await store.append_events([event], [run]) == 1
    (stored,) = await store.list_runs_for_event(event.internal_id)
    assert (stored.run_id, stored.status) == (run.run_id, RunStatus.QUEUED)
    # A seeded retry: the same event, runs planned anew (new ids). Nothing new is stored.
    retry = make_run(event_ids=(event.internal_id,), key="order-1")
    assert await store.append_events([event], [retry]) == 0
    assert await store.get_run(retry.run_id) is None
    assert [r.run_id for r in await store.list_runs_for_event(event.internal_id)] == [run.run_id]
    assert len(await claim_all(store, "w1", T0)) == 1


async def test_append_events_and_runs_are_one_transaction(store: Store) -> None:
    good = make_event()
    bad = make_event(received_at=2**63)  # no database stores it: the whole append fails
    run = make_run(event_ids=(good.internal_id,))
    with pytest.raises((StoreError, OverflowError)):
        await store.append_events([good, bad], [run])
    assert await store.count_events() == 0
    assert await store.get_run(run.run_id) is None
    assert await store.next_due_at() is None


# -- claiming --------------------------------------------------------------------------------------


async def test_claim_takes_only_due_items_oldest_first_up_to_the_limit(store: Store) -> None:
    due_times = [T0 + 30, T0, T0 + 20, T0 + 10, T0 + 40, T0 + 1_000]
    runs = [make_run(start_at=at) for at in due_times]
    await store.create_runs(runs)
    assert await store.claim_due("w1", T0 + 40, LEASE, 0) == []
    first = await store.claim_due("w1", T0 + 40, LEASE, 2)
    assert [i.due_at for i in first] == [T0, T0 + 10]
    rest = await store.claim_due("w1", T0 + 40, LEASE, 10)
    assert [i.due_at for i in rest] == [T0 + 20, T0 + 30, T0 + 40]  # not the future one
    assert all((i.lease_owner, i.lease_until) == ("w1", T0 + 40 + LEASE) for i in first + rest)
    by_due = {run.start_at: run.run_id for run in runs}
    assert [i.run_id for i in first + rest] == [by_due[i.due_at] for i in first + rest]


async def test_claim_makes_a_queued_run_running_once(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    (item,) = await claim_all(store, "w1", T0 + 7)
    got = await store.get_run(run.run_id)
    assert got is not None and (got.status, got.started_at) == (RunStatus.RUNNING, T0 + 7)
    assert await store.reschedule(item.item_id, "w1", T0 + 100, 1)
    (again,) = await claim_all(store, "w1", T0 + 100)
    assert (again.item_id, again.attempt) == (item.item_id, 1)
    got = await store.get_run(run.run_id)
    assert got is not None and got.started_at == T0 + 7  # the first start stays


async def test_a_live_lease_prevents_a_second_claim_and_an_expired_one_does_not(
    store: Store,
) -> None:
    await store.create_runs([make_run()])
    (item,) = await claim_all(store, "w1", T0)
    assert await claim_all(store, "w2", T0 + LEASE - 1) == []
    (again,) = await claim_all(store, "w2", T0 + LEASE)  # the lease ended: a crash, say
    assert again.item_id == item.item_id
    assert (again.lease_owner, again.lease_until) == ("w2", T0 + 2 * LEASE)
    # The first owner lost it: its late writes are refused, the new owner's are not.
    assert not await store.reschedule(item.item_id, "w1", T0, 0)
    assert not await store.extend_lease(item.item_id, "w1", T0 + 10 * LEASE)
    assert not await store.finish_run(item.run_id, item.item_id, "w1", RunStatus.FAILED, T0)
    got = await store.get_run(item.run_id)
    assert got is not None and got.status is RunStatus.RUNNING
    assert await store.reschedule(item.item_id, "w2", T0 + LEASE + 5, 2)


async def test_concurrent_claims_take_each_item_once(store: Store) -> None:
    await store.create_runs([make_run(start_at=T0 + i) for i in range(100)])

    async def claimer(owner: str) -> list[str]:
        mine: list[str] = []
        while items := await store.claim_due(owner, T0 + 100, LEASE, 3):
            mine += [i.item_id for i in items]
        return mine

    claimed = await asyncio.gather(*(claimer(f"w{n}") for n in range(10)))
    every = [item_id for mine in claimed for item_id in mine]
    assert len(every) == 100 and len(set(every)) == 100


# -- next_due_at -----------------------------------------------------------------------------------


async def test_next_due_at_covers_future_items_and_leases(store: Store) -> None:
    assert await store.next_due_at() is None
    await store.create_runs([make_run(start_at=T0 + 500), make_run(start_at=T0 + 100)])
    assert await store.next_due_at() == T0 + 100
    (item,) = await claim_all(store, "w1", T0 + 100, lease_ms=1_000)
    # Leased until T0 + 1100; the other item is due at T0 + 500.
    assert await store.next_due_at() == T0 + 500
    await claim_all(store, "w1", T0 + 500, lease_ms=100)
    # Both leased: the earliest lease end is when one becomes claimable again.
    assert await store.next_due_at() == T0 + 600
    assert await store.extend_lease(item.item_id, "w1", T0 + 400)
    assert await store.next_due_at() == T0 + 400
    # A lease that ended is reported as is (in the past: due now).
    await store.create_runs([make_run(start_at=T0 + 50_000)])
    assert await store.next_due_at() == T0 + 400


async def test_next_due_at_after_a_reschedule(store: Store) -> None:
    await store.create_runs([make_run()])
    (item,) = await claim_all(store, "w1", T0)
    assert await store.reschedule(item.item_id, "w1", T0 + 9_000, 1)
    assert await store.next_due_at() == T0 + 9_000


# -- steps -------------------------------------------------------------------------------------


async def test_a_step_is_recorded_exactly_once_and_listed_in_recording_order(
    store: Store,
) -> None:
    run, other = make_run(), make_run()
    await store.create_runs([run, other])
    assert await store.list_steps(run.run_id) == []
    order = ["zeta", "alpha", "mid"]  # not sorted: the order is the recording order
    for n, step_id in enumerate(order):
        assert await store.record_step(make_step(run.run_id, step_id, {"n": n, "ok": True}))
    assert await store.record_step(make_step(other.run_id, "alpha", "other run"))
    # A second result for a recorded step is refused; the first is kept.
    assert not await store.record_step(make_step(run.run_id, "alpha", "late duplicate"))
    steps = await store.list_steps(run.run_id)
    assert [s.step_id for s in steps] == order
    expected = make_step(run.run_id, "alpha", {"n": 1, "ok": True})
    assert json_value(steps[1].memo_json) == json_value(expected.memo_json)
    assert dataclasses.replace(steps[1], memo_json=b"") == dataclasses.replace(
        expected, memo_json=b""
    )
    assert [s.step_id for s in await store.list_steps(other.run_id)] == ["alpha"]


async def test_concurrent_records_of_one_step_store_it_once(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    results = await asyncio.gather(
        *(store.record_step(make_step(run.run_id, "s", n)) for n in range(10))
    )
    assert sorted(results) == [False] * 9 + [True]
    (step,) = await store.list_steps(run.run_id)
    assert orjson.loads(step.memo_json)["data"] == results.index(True)


# -- reschedule, extend_lease, finish_run ------------------------------------------------------


async def test_reschedule_by_the_owner_releases_the_lease(store: Store) -> None:
    await store.create_runs([make_run()])
    (item,) = await claim_all(store, "w1", T0)
    assert not await store.reschedule(item.item_id, "someone-else", T0 + 10, 1)
    assert await store.reschedule(item.item_id, "w1", T0 + 10, 3)
    # Released: not the owner's any more, and due at the new time for anyone.
    assert not await store.reschedule(item.item_id, "w1", T0 + 20, 4)
    assert await claim_all(store, "w2", T0 + 9) == []
    (again,) = await claim_all(store, "w2", T0 + 10)
    assert (again.item_id, again.due_at, again.attempt, again.lease_owner) == (
        item.item_id,
        T0 + 10,
        3,
        "w2",
    )


async def test_extend_lease_keeps_the_item_from_other_claimers(store: Store) -> None:
    await store.create_runs([make_run()])
    (item,) = await claim_all(store, "w1", T0)
    assert await store.extend_lease(item.item_id, "w1", T0 + 3 * LEASE)
    assert await claim_all(store, "w2", T0 + 2 * LEASE) == []
    assert not await store.extend_lease(item.item_id, "w2", T0 + 9 * LEASE)
    (again,) = await claim_all(store, "w2", T0 + 3 * LEASE)
    assert again.item_id == item.item_id
    assert not await store.extend_lease(item.item_id, "w1", T0 + 9 * LEASE)
    assert await store.finish_run(item.run_id, item.item_id, "w2", RunStatus.COMPLETED, T0)
    assert not await store.extend_lease(item.item_id, "w2", T0 + 9 * LEASE)  # item gone


async def test_finish_run_sets_the_result_clears_items_and_is_idempotent(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    (item,) = await claim_all(store, "w1", T0)
    output = orjson.dumps({"total": 42, "items": ["a", "b"]})
    assert await store.finish_run(
        run.run_id, item.item_id, "w1", RunStatus.COMPLETED, T0 + 99, output_json=output
    )
    got = await store.get_run(run.run_id)
    assert got is not None
    assert (got.status, got.started_at, got.ended_at) == (RunStatus.COMPLETED, T0, T0 + 99)
    assert json_value(got.output_json) == json_value(output)
    assert got.error_json is None
    assert await store.next_due_at() is None
    assert await claim_all(store, "w1", T0 + 10 * LEASE) == []
    # Again (a retried finish, or a late execution): nothing changes.
    assert not await store.finish_run(
        run.run_id, item.item_id, "w1", RunStatus.FAILED, T0 + 500, error_json=b'{"e":1}'
    )
    assert await store.get_run(run.run_id) == got


async def test_finish_run_records_a_failure(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    (item,) = await claim_all(store, "w1", T0)
    error = orjson.dumps({"name": "Error", "message": "boom"})
    assert await store.finish_run(
        run.run_id, item.item_id, "w1", RunStatus.FAILED, T0 + 1, error_json=error
    )
    got = await store.get_run(run.run_id)
    assert got is not None and got.status is RunStatus.FAILED
    assert json_value(got.error_json) == json_value(error) and got.output_json is None


async def test_finish_run_deletes_every_item_of_the_run(store: Store) -> None:
    run, other = make_run(), make_run()
    await store.create_runs([run, other])
    items = await claim_all(store, "w1", T0)
    mine = next(i for i in items if i.run_id == run.run_id)
    assert await store.finish_run(run.run_id, mine.item_id, "w1", RunStatus.COMPLETED, T0)
    # The other run's item is untouched (still leased by w1).
    (left,) = await claim_all(store, "w2", T0 + LEASE)
    assert left.run_id == other.run_id


async def test_finish_run_needs_a_final_status(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    with pytest.raises(ValueError, match="final"):
        await store.finish_run(run.run_id, None, None, RunStatus.RUNNING, T0)


async def test_cancelling_a_queued_run_ignores_leases_and_clears_its_items(store: Store) -> None:
    queued, leased = make_run(start_at=T0 + HOUR), make_run()
    await store.create_runs([queued, leased])
    assert await store.finish_run(
        queued.run_id, None, None, RunStatus.CANCELLED, T0 + 1, reason="cancelled through the API"
    )
    got = await store.get_run(queued.run_id)
    assert got is not None
    assert (got.status, got.ended_at, got.reason, got.started_at) == (
        RunStatus.CANCELLED,
        T0 + 1,
        "cancelled through the API",
        None,
    )
    # A running run is cancelled whatever its lease; its owner's later writes then fail.
    (item,) = await claim_all(store, "w1", T0)
    assert await store.finish_run(leased.run_id, None, None, RunStatus.CANCELLED, T0 + 2)
    assert not await store.reschedule(item.item_id, "w1", T0 + 10, 1)
    assert not await store.finish_run(
        leased.run_id, item.item_id, "w1", RunStatus.COMPLETED, T0 + 3
    )
    assert await store.next_due_at() is None
    assert await claim_all(store, "w2", T0 + 2 * HOUR) == []
    # Cancelling again changes nothing.
    assert not await store.finish_run(queued.run_id, None, None, RunStatus.CANCELLED, T0 + 9)
    assert await store.get_run(queued.run_id) == got


async def test_cancelling_a_final_run_leaves_it_as_it_is(store: Store) -> None:
    run = make_run()
    skipped = make_run(key="k")
    await store.create_runs([make_run(key="k"), run])
    await store.create_runs([skipped])
    (item,) = [i for i in await claim_all(store, "w1", T0) if i.run_id == run.run_id]
    assert await store.finish_run(
        run.run_id, item.item_id, "w1", RunStatus.COMPLETED, T0 + 5, output_json=b"1"
    )
    completed = await store.get_run(run.run_id)
    assert not await store.finish_run(run.run_id, None, None, RunStatus.CANCELLED, T0 + 6)
    assert await store.get_run(run.run_id) == completed
    before = await store.get_run(skipped.run_id)
    assert before is not None and before.status is RunStatus.SKIPPED
    assert not await store.finish_run(skipped.run_id, None, None, RunStatus.CANCELLED, T0 + 7)
    assert await store.get_run(skipped.run_id) == before
    assert not await store.finish_run(new_ulid(), None, None, RunStatus.CANCELLED, T0)


async def test_runs_survive_a_reopen(store_url: str) -> None:
    first = open_store(store_url)
    await first.open()
    run = make_run()
    await first.create_runs([run])
    await first.record_step(make_step(run.run_id, "s1", 1))
    await first.close()
    second = open_store(store_url)
    await second.open()
    try:
        got = await second.get_run(run.run_id)
        assert got is not None and got.status is RunStatus.QUEUED
        assert [s.step_id for s in await second.list_steps(run.run_id)] == ["s1"]
        assert len(await claim_all(second, "w1", T0)) == 1
    finally:
        await second.close()


# -- PostgreSQL: several processes sharing one database ----------------------------------------


@pytest.mark.postgres
async def test_concurrent_claimers_on_separate_pools_claim_each_item_once(
    postgres_url: str,
) -> None:
    """Eight "processes" (a store and pool each) claim 200 due items at once: FOR UPDATE SKIP
    LOCKED hands every item to exactly one of them, and each run starts once."""
    stores = [open_store(f"{postgres_url}&pool_max=2") for _ in range(8)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        runs = [make_run(start_at=T0 + i % 17) for i in range(200)]
        await stores[0].create_runs(runs)
        start = asyncio.Event()

        async def claimer(store: Store, owner: str) -> list[QueueItem]:
            await start.wait()
            mine: list[QueueItem] = []
            while items := await store.claim_due(owner, T0 + 100, LEASE, 4):
                mine += items
                await asyncio.sleep(0)
            return mine

        tasks = [
            asyncio.create_task(claimer(store, f"w{n}-{k}"))
            for n, store in enumerate(stores)
            for k in range(2)
        ]
        start.set()
        claimed = await asyncio.gather(*tasks)
        every = [item for mine in claimed for item in mine]
        assert len(every) == 200
        assert len({item.item_id for item in every}) == 200
        assert {item.run_id for item in every} == {run.run_id for run in runs}
        assert sum(1 for mine in claimed if mine) > 1  # the work was actually shared
        for run in runs[:20]:
            got = await stores[1].get_run(run.run_id)
            assert got is not None and (got.status, got.started_at) == (
                RunStatus.RUNNING,
                T0 + 100,
            )
    finally:
        await asyncio.gather(*(store.close() for store in stores))


@pytest.mark.postgres
async def test_concurrent_creates_with_one_key_queue_exactly_one_run(postgres_url: str) -> None:
    stores = [open_store(postgres_url) for _ in range(8)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        results = await asyncio.gather(
            *(
                store.create_runs([make_run(key="order-7"), make_run(key=f"own-{n}")])
                for n, store in enumerate(stores)
            )
        )
        shared = [records[0].status for records in results]
        assert shared.count(RunStatus.QUEUED) == 1
        assert shared.count(RunStatus.SKIPPED) == 7
        assert all(records[1].status is RunStatus.QUEUED for records in results)
        assert len(await stores[0].claim_due("w", T0, LEASE, 100)) == 9
    finally:
        await asyncio.gather(*(store.close() for store in stores))


@pytest.mark.postgres
async def test_finishes_and_cancellations_racing_claims_end_each_run_once(
    postgres_url: str,
) -> None:
    """Workers claim and complete runs while the API cancels the same runs from other pools:
    no statement fails (a deadlock would surface after its retries), every run ends exactly once,
    and nothing is left in the queue."""
    stores = [open_store(f"{postgres_url}&pool_max=3") for _ in range(6)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        runs = [make_run() for _ in range(300)]
        await stores[0].create_runs(runs)

        async def worker(store: Store, owner: str) -> int:
            completed = 0
            while items := await store.claim_due(owner, T0, LEASE, 3):
                for item in items:
                    completed += await store.finish_run(
                        item.run_id, item.item_id, owner, RunStatus.COMPLETED, T0 + 1
                    )
            return completed

        async def canceller(store: Store, some: list[NewRun]) -> int:
            cancelled = 0
            for run in some:
                cancelled += await store.finish_run(
                    run.run_id, None, None, RunStatus.CANCELLED, T0 + 2
                )
            return cancelled

        ended = await asyncio.gather(
            *(worker(store, f"w{n}") for n, store in enumerate(stores[:3])),
            *(canceller(store, runs[n::3]) for n, store in enumerate(stores[3:])),
        )
        assert sum(ended) == len(runs)
        statuses = [await stores[0].get_run(run.run_id) for run in runs]
        assert all(s is not None and s.status.is_final for s in statuses)
        assert await stores[0].next_due_at() is None
    finally:
        await asyncio.gather(*(store.close() for store in stores))


# -- a run's end and its announcement: one transaction ------------------------------------------


async def test_finish_run_stores_its_announcement_and_the_runs_it_starts(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    (item,) = await claim_all(store, "w", T0 + 1)
    announcement = make_event("inngest/function.finished", received_at=T0 + 2)
    handler = make_run("app-on-failure", event_ids=(announcement.internal_id,), created_at=T0 + 2)
    finished = await store.finish_run(
        run.run_id,
        item.item_id,
        "w",
        RunStatus.FAILED,
        T0 + 2,
        announce=[announcement],
        announce_runs=[handler],
    )
    assert finished
    assert await store.get_event(announcement.internal_id) is not None
    started = await store.get_run(handler.run_id)
    assert started is not None and started.status is RunStatus.QUEUED


async def test_a_finish_that_does_not_happen_announces_nothing(store: Store) -> None:
    run = make_run()
    await store.create_runs([run])
    (item,) = await claim_all(store, "w", T0 + 1)
    announcement = make_event("inngest/function.finished", received_at=T0 + 2)
    handler = make_run("app-on-failure", event_ids=(announcement.internal_id,), created_at=T0 + 2)
    lost = await store.finish_run(
        run.run_id,
        item.item_id,
        "someone-else",  # the lease is not this owner's
        RunStatus.COMPLETED,
        T0 + 2,
        announce=[announcement],
        announce_runs=[handler],
    )
    assert not lost
    assert await store.get_event(announcement.internal_id) is None
    assert await store.get_run(handler.run_id) is None
