"""The contract of the dashboard's reads and replay's writes (store/queries.py): the same tests on
SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from headwater.protocol.ids import new_ulid
from headwater.store import EventQuery, Store
from headwater.store.queries import (
    Cursor,
    EventPage,
    ReplayJob,
    ReplayJobState,
    ReplayLink,
    RunQuery,
)
from headwater.store.runs import RunStatus
from tests.integration.test_store_contract import make_event
from tests.integration.test_store_runs_contract import LEASE, T0, make_run, make_step


async def _runs(
    store: Store, count: int, function_id: str = "app-fn", start: int = T0
) -> list[str]:
    runs = [make_run(function_id, created_at=start + index) for index in range(count)]
    await store.create_runs(runs)
    return [run.run_id for run in runs]


async def test_list_runs_pages_newest_first_without_gaps_or_repeats(store: Store) -> None:
    # Given 7 runs, two of them created in the same millisecond
    ids = await _runs(store, 6)
    same_ms = make_run("app-fn", created_at=T0 + 5)
    await store.create_runs([same_ms])
    # When they are read 3 at a time, following the cursor
    seen: list[str] = []
    query = RunQuery(limit=3)
    while True:
        page = await store.list_runs(query)
        seen += [run.run_id for run in page]
        cursor = query.next_cursor(page)
        if cursor is None:
            break
        query = RunQuery(limit=3, cursor=Cursor.parse(cursor.text()))
    # Then every run comes once, newest first, ties broken by id
    created = {run_id: T0 + index for index, run_id in enumerate(ids)} | {same_ms.run_id: T0 + 5}
    assert seen == sorted(created, key=lambda run_id: (created[run_id], run_id), reverse=True)


async def test_list_runs_filters_by_function_status_and_window(store: Store) -> None:
    mine = await _runs(store, 4, "app-mine")
    await _runs(store, 3, "app-other")
    (claimed,) = await store.claim_due("w", T0 + 10_000, LEASE, 1)
    await store.finish_run(claimed.run_id, claimed.item_id, "w", RunStatus.FAILED, T0 + 10_001)

    by_function = await store.list_runs(RunQuery(function_id="app-mine"))
    assert [run.run_id for run in by_function] == mine[::-1]
    failed = await store.list_runs(RunQuery(statuses=(RunStatus.FAILED,)))
    assert [run.run_id for run in failed] == [claimed.run_id]
    assert failed[0].event_ids  # records come whole
    window = await store.list_runs(
        RunQuery(function_id="app-mine", created_after=T0 + 1, created_before=T0 + 3)
    )
    assert [run.run_id for run in window] == [mine[2], mine[1]]
    several = await store.list_runs(
        RunQuery(function_id="app-mine", statuses=(RunStatus.QUEUED, RunStatus.FAILED))
    )
    assert len(several) == 4


async def test_count_runs_by_status_is_bounded(store: Store) -> None:
    await _runs(store, 5, "app-counted")
    await _runs(store, 2, "app-else")
    items = await store.claim_due("w", T0 + 10_000, LEASE, 100)
    counted = [item for item in items if item.run_id]
    finished = 0
    for item in counted[:3]:
        run = await store.get_run(item.run_id)
        assert run is not None
        if run.function_id == "app-counted":
            status = RunStatus.COMPLETED if finished < 1 else RunStatus.FAILED
            await store.finish_run(item.run_id, item.item_id, "w", status, T0 + 10_001)
            finished += 1

    counts = await store.count_runs("app-counted", T0, T0 + 1_000)
    assert counts.total == 5
    assert counts.count(RunStatus.COMPLETED) + counts.count(RunStatus.FAILED) == finished
    everything = await store.count_runs(None, T0, T0 + 1_000)
    assert everything.total == 7
    capped = await store.count_runs(None, T0, T0 + 1_000, cap=2)
    assert all(value <= 2 for value in capped.by_status.values())
    assert capped.approximate and capped.cap == 2 and not everything.approximate
    assert (await store.count_runs("app-counted", T0 + 1_000, T0 + 2_000)).total == 0


async def test_failure_rate_is_failed_over_finished() -> None:
    from headwater.store.queries import RunCounts

    assert RunCounts({}).failure_rate is None
    counts = RunCounts({RunStatus.COMPLETED: 3, RunStatus.FAILED: 1, RunStatus.RUNNING: 9})
    assert counts.failure_rate == pytest.approx(0.25)


async def test_create_replay_copies_memos_and_links_the_original(store: Store) -> None:
    # Given a finished run with two steps
    (original,) = await store.create_runs([make_run("app-fn")])
    await store.record_step(make_step(original.run_id, "a", {"n": 1}))
    await store.record_step(make_step(original.run_id, "b", [2]))
    steps = await store.list_steps(original.run_id)
    # When it is replayed from step "b" (copying "a")
    replay = make_run("app-fn", event_ids=original.event_ids, created_at=T0 + 50)
    record = await store.create_replay(
        replay, ReplayLink(replay.run_id, original.run_id, "b"), steps[:1]
    )
    # Then the replay is queued with the same events, the memo of "a", and its link
    assert record.status is RunStatus.QUEUED
    stored = await store.get_run(replay.run_id)
    assert stored is not None and stored.event_ids == original.event_ids
    copied = await store.list_steps(replay.run_id)
    assert [(s.step_id, orjson.loads(s.memo_json)) for s in copied] == [("a", {"data": {"n": 1}})]
    assert await store.replay_link(replay.run_id) == ReplayLink(
        replay.run_id, original.run_id, "b", None
    )
    assert await store.replay_link(original.run_id) is None
    assert await store.replays_of(original.run_id) == [replay.run_id]
    # And it is claimable like any new run
    items = await store.claim_due("w", T0 + 100, LEASE, 10)
    assert replay.run_id in {item.run_id for item in items}


async def test_create_replay_from_the_start_copies_nothing(store: Store) -> None:
    (original,) = await store.create_runs([make_run("app-fn")])
    replay = make_run("app-fn", event_ids=original.event_ids)
    await store.create_replay(replay, ReplayLink(replay.run_id, original.run_id, None, "J"), [])
    assert await store.list_steps(replay.run_id) == []
    link = await store.replay_link(replay.run_id)
    assert link is not None and link.job_id == "J"


async def test_create_replay_refuses_an_idempotency_key(store: Store) -> None:
    replay = make_run("app-fn", key="k")
    with pytest.raises(ValueError, match="idempotency"):
        await store.create_replay(replay, ReplayLink(replay.run_id, new_ulid()), [])


def _job(job_id: str | None = None) -> ReplayJob:
    return ReplayJob(
        job_id=job_id or new_ulid(),
        function_id="app-fn",
        created_after=T0,
        created_before=T0 + 1_000,
        statuses=(RunStatus.FAILED, RunStatus.CANCELLED),
        state=ReplayJobState.RUNNING,
        total=12,
        replayed=0,
        created_at=T0,
        updated_at=T0,
    )


async def test_replay_jobs_record_progress_until_they_end(store: Store) -> None:
    job = _job()
    await store.create_replay_job(job)
    assert await store.get_replay_job(job.job_id) == job
    cursor = Cursor(T0 + 7, new_ulid())
    assert await store.claim_replay_job(job.job_id, "me", T0, T0 + LEASE)
    assert await store.record_replay_progress(job.job_id, "me", 5, cursor, T0 + 1, T0 + LEASE)
    progressed = await store.get_replay_job(job.job_id)
    assert progressed is not None
    assert (progressed.replayed, progressed.cursor, progressed.updated_at) == (5, cursor, T0 + 1)
    # Stopping ends it once; progress after that is refused
    assert await store.end_replay_job(job.job_id, ReplayJobState.CANCELLED, T0 + 2)
    assert not await store.end_replay_job(job.job_id, ReplayJobState.COMPLETED, T0 + 3)
    assert not await store.record_replay_progress(job.job_id, "me", 6, cursor, T0 + 4, T0 + LEASE)
    assert not await store.claim_replay_job(job.job_id, "me", T0 + 5, T0 + LEASE)
    ended = await store.get_replay_job(job.job_id)
    assert ended is not None
    assert (ended.state, ended.ended_at, ended.replayed) == (ReplayJobState.CANCELLED, T0 + 2, 5)


async def test_list_replay_jobs_newest_first(store: Store) -> None:
    first, second = _job(), _job()
    await store.create_replay_job(first)
    await store.create_replay_job(second)
    listed = await store.list_replay_jobs(10)
    assert [job.job_id for job in listed] == sorted([first.job_id, second.job_id], reverse=True)
    await store.end_replay_job(first.job_id, ReplayJobState.FAILED, T0, "boom")
    failed = await store.get_replay_job(first.job_id)
    assert failed is not None and failed.error == "boom"


async def test_replay_jobs_list_in_keyset_pages(store: Store) -> None:
    # Given five jobs
    jobs = [_job() for _ in range(5)]
    for job in jobs:
        await store.create_replay_job(job)
    # When they are listed two at a time, each page after the previous one's last id
    seen: list[str] = []
    before: str | None = None
    while True:
        page = await store.list_replay_jobs(2, before)
        seen += [job.job_id for job in page]
        if len(page) < 2:
            break
        before = page[-1].job_id
    # Then each comes once, newest first
    assert seen == sorted((job.job_id for job in jobs), reverse=True)


async def test_running_replay_jobs_are_found_however_many_newer_ones_ended(store: Store) -> None:
    # Given a running job, then more newer jobs than a page, ended, and one newer running job
    oldest = _job()
    await store.create_replay_job(oldest)
    for _ in range(101):
        ended = _job()
        await store.create_replay_job(ended)
        await store.end_replay_job(ended.job_id, ReplayJobState.COMPLETED, T0)
    newest = _job()
    await store.create_replay_job(newest)
    # Then both running jobs are found, oldest first, and only they
    running = await store.running_replay_jobs()
    assert [job.job_id for job in running] == [oldest.job_id, newest.job_id]
    assert [job.job_id for job in await store.running_replay_jobs(limit=1)] == [oldest.job_id]


async def test_list_events_received_pages_newest_received_first_in_a_window(store: Store) -> None:
    # Given events received over time, two in the same millisecond, one a system event
    events = [make_event("app/a", received_at=T0 + i) for i in range(5)]
    events.append(make_event("app/b", received_at=T0 + 2))
    events.append(make_event("inngest/function.finished", received_at=T0 + 3))
    await store.append_events(events)
    # When they are read two at a time in the window [T0 + 1, T0 + 4)
    seen: list[str] = []
    page = EventPage(EventQuery(limit=2, received_after=T0 + 1, received_before=T0 + 4))
    while True:
        records = await store.list_events_received(page)
        seen += [record.internal_id for record in records]
        cursor = page.next_cursor(records)
        if cursor is None:
            break
        page = EventPage(page.filters, Cursor.parse(cursor.text()))
    # Then each comes once, newest received first, system events left out
    expected = sorted(
        (e for e in events if T0 + 1 <= e.received_at < T0 + 4 and e.name.startswith("app/")),
        key=lambda e: (e.received_at, e.internal_id),
        reverse=True,
    )
    assert seen == [e.internal_id for e in expected]
    named = await store.list_events_received(EventPage(EventQuery(name="app/b")))
    assert [r.internal_id for r in named] == [events[5].internal_id]


async def test_a_batch_run_replays_with_all_its_events_in_order(store: Store) -> None:
    batch = (new_ulid(), new_ulid(), new_ulid())
    (original,) = await store.create_runs([make_run("app-fn", event_ids=batch)])
    replay = make_run("app-fn", event_ids=original.event_ids)
    await store.create_replay(replay, ReplayLink(replay.run_id, original.run_id), [])
    stored = await store.get_run(replay.run_id)
    assert stored is not None and stored.event_ids == batch


async def test_one_owner_runs_a_job_until_its_lease_expires(store: Store) -> None:
    job = _job()
    await store.create_replay_job(job)
    cursor = Cursor(T0 + 7, new_ulid())
    # Given "a" holds the job's lease
    assert await store.claim_replay_job(job.job_id, "a", T0, T0 + 100)
    # Then "b" can neither take it nor save progress while the lease lives
    assert not await store.claim_replay_job(job.job_id, "b", T0 + 50, T0 + 150)
    assert not await store.record_replay_progress(job.job_id, "b", 1, cursor, T0 + 50, T0 + 150)
    # And "a" renews it by saving a page
    assert await store.record_replay_progress(job.job_id, "a", 1, cursor, T0 + 90, T0 + 200)
    assert not await store.claim_replay_job(job.job_id, "b", T0 + 150, T0 + 250)
    # When the lease expires, "b" takes the job over and "a" can no longer save
    assert await store.claim_replay_job(job.job_id, "b", T0 + 200, T0 + 300)
    assert not await store.record_replay_progress(job.job_id, "a", 2, cursor, T0 + 210, T0 + 300)
