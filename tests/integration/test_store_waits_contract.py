"""The wait verbs (wait_for_event, cancel_on) on every backend."""

from __future__ import annotations

import orjson

from headwater.protocol.ids import new_ulid
from headwater.store import Store
from headwater.store.runs import NewRun, RunStatus, StepRecord, WaitKind, WaitRecord

NOW = 1_700_000_000_000


async def queued_run(store: Store) -> str:
    run_id = new_ulid()
    await store.create_runs([NewRun(run_id, "app-fn", (new_ulid(),), NOW, NOW)])
    return run_id


def step_wait(
    run_id: str, *, expires_at: int = NOW + 60_000, name: str = "app/reply"
) -> WaitRecord:
    return WaitRecord(
        wait_id=f"{run_id}:s1",
        run_id=run_id,
        kind=WaitKind.STEP,
        event_name=name,
        expression="event.data.id == async.data.id",
        created_at=NOW,
        expires_at=expires_at,
        step_id="s1",
        step_name="wait-reply",
        match_from=NOW - 1000,
    )


async def test_park_stores_the_wait_and_releases_the_lease(store: Store) -> None:
    run_id = await queued_run(store)
    (item,) = await store.claim_due("me", NOW, 30_000, 10)
    wait = step_wait(run_id)
    assert not await store.park_for_wait(item.item_id, "someone-else", wait)
    assert await store.waits_of_run(run_id) == []
    assert await store.park_for_wait(item.item_id, "me", wait)
    assert await store.waits_of_run(run_id) == [wait]
    assert await store.next_due_at() == wait.expires_at
    # parking again (a replay after a crash) keeps the first wait as it was
    (again,) = await store.claim_due("me", wait.expires_at, 30_000, 10)
    assert await store.park_for_wait(
        again.item_id, "me", step_wait(run_id, expires_at=NOW + 999_999)
    )
    assert await store.waits_of_run(run_id) == [wait]


async def test_pending_waits_by_name_unexpired_and_active_runs_only(store: Store) -> None:
    live = await queued_run(store)
    expired = await queued_run(store)
    other_name = await queued_run(store)
    finished = await queued_run(store)
    await store.add_waits(
        [
            step_wait(live),
            step_wait(expired, expires_at=NOW - 1),
            step_wait(other_name, name="app/other"),
            step_wait(finished),
        ]
    )
    await store.finish_run(finished, None, None, RunStatus.CANCELLED, NOW)
    assert [w.run_id for w in await store.pending_waits("app/reply", NOW)] == [live]


async def test_resolving_records_the_memo_once_and_wakes_the_run(store: Store) -> None:
    run_id = await queued_run(store)
    (item,) = await store.claim_due("me", NOW, 30_000, 10)
    wait = step_wait(run_id)
    await store.park_for_wait(item.item_id, "me", wait)
    memo = orjson.dumps({"name": "app/reply", "data": {"id": 1}})
    step = StepRecord(run_id, "s1", "wait-reply", "WaitForEvent", memo, NOW, NOW + 5)
    assert await store.resolve_step_wait(wait.wait_id, step, NOW + 5)
    assert not await store.resolve_step_wait(wait.wait_id, step, NOW + 6)
    (recorded,) = await store.list_steps(run_id)
    assert orjson.loads(recorded.memo_json) == {"name": "app/reply", "data": {"id": 1}}
    assert await store.waits_of_run(run_id) == []
    assert [i.run_id for i in await store.claim_due("me", NOW + 5, 30_000, 10)] == [run_id]


async def test_delete_wait(store: Store) -> None:
    run_id = await queued_run(store)
    await store.add_waits([step_wait(run_id)])
    assert await store.delete_wait(f"{run_id}:s1")
    assert not await store.delete_wait(f"{run_id}:s1")
