"""Retention on SQLite and PostgreSQL (store/retention.py): what is old goes, what anything still
needs stays."""

from __future__ import annotations

from headwater.store import Store
from headwater.store.runs import RunStatus
from tests.integration.test_store_contract import make_event
from tests.integration.test_store_runs_contract import DAY, T0, claim_all, make_run, make_step


async def test_old_ended_runs_and_unlisted_events_go_and_the_rest_stays(store: Store) -> None:
    old_event, kept_event, lone_old, lone_new = (
        make_event(received_at=T0),
        make_event(received_at=T0),
        make_event(received_at=T0),
        make_event(received_at=T0 + 10 * DAY),
    )
    await store.append_events([old_event, kept_event, lone_old, lone_new])
    ended = make_run(event_ids=(old_event.internal_id,), created_at=T0, key="k1")
    sleeping = make_run(event_ids=(kept_event.internal_id,), created_at=T0)
    await store.create_runs([ended, sleeping])
    items = {item.run_id: item for item in await claim_all(store, "w", T0 + 1)}
    await store.record_step(make_step(ended.run_id, "s1", 1, at=T0 + 1))
    await store.finish_run(
        ended.run_id, items[ended.run_id].item_id, "w", RunStatus.COMPLETED, T0 + 2
    )
    await store.reschedule(items[sleeping.run_id].item_id, "w", T0 + 30 * DAY, 0)

    cutoff = T0 + 5 * DAY
    deleted = await store.delete_expired(cutoff, limit=1_000)
    assert (deleted.runs, deleted.events, deleted.keys) == (1, 2, 1)
    assert await store.get_run(ended.run_id) is None
    assert await store.list_steps(ended.run_id) == []
    assert await store.get_event(old_event.internal_id) is None
    assert await store.get_event(lone_old.internal_id) is None
    # A run still sleeping keeps itself and its (old) event; a recent event stays.
    assert await store.get_run(sleeping.run_id) is not None
    assert await store.get_event(kept_event.internal_id) is not None
    assert await store.get_event(lone_new.internal_id) is not None
    # Nothing more to do: a second pass deletes nothing.
    again = await store.delete_expired(cutoff, limit=1_000)
    assert again.total == 0


async def test_deletion_goes_a_batch_at_a_time_oldest_first(store: Store) -> None:
    events = [make_event(received_at=T0 + i) for i in range(5)]
    await store.append_events(events)
    first = await store.delete_expired(T0 + DAY, limit=2)
    assert first.events == 2
    assert await store.get_event(events[0].internal_id) is None
    assert await store.get_event(events[2].internal_id) is not None
    assert (await store.delete_expired(T0 + DAY, limit=10)).events == 3
