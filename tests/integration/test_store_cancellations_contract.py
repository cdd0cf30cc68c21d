"""The contract of bulk cancellations' store verbs (store/cancellations.py): the same tests on
SQLite and PostgreSQL."""

from __future__ import annotations

from headwater.protocol.ids import new_ulid
from headwater.store import Store
from headwater.store.cancellations import CancellationJob, CancellationState
from headwater.store.queries import Cursor
from tests.integration.test_store_runs_contract import LEASE, T0


def _job(condition: str | None = "event.data.x == 1") -> CancellationJob:
    return CancellationJob(
        job_id=new_ulid(),
        app_id="app",
        function_id="fn",
        started_after=T0,
        started_before=T0 + 1_000,
        condition=condition,
        state=CancellationState.RUNNING,
        cancelled=0,
        created_at=T0,
        updated_at=T0,
    )


async def test_a_job_is_stored_whole_and_records_progress_until_it_ends(store: Store) -> None:
    # Given a stored job
    job = _job()
    await store.create_cancellation(job)
    assert await store.get_cancellation(job.job_id) == job
    assert await store.get_cancellation(new_ulid()) is None
    # When its runner saves a page
    cursor = Cursor(T0 + 7, new_ulid())
    assert await store.claim_cancellation(job.job_id, "me", T0, T0 + LEASE)
    assert await store.record_cancellation_progress(job.job_id, "me", 5, cursor, T0 + 1, T0 + LEASE)
    # Then its count and position are read back
    saved = await store.get_cancellation(job.job_id)
    assert saved is not None
    assert (saved.cancelled, saved.cursor, saved.updated_at) == (5, cursor, T0 + 1)
    # And once stopped it ends once, and cannot be claimed again
    assert await store.end_cancellation(job.job_id, CancellationState.STOPPED, T0 + 2)
    assert not await store.end_cancellation(job.job_id, CancellationState.COMPLETED, T0 + 3)
    assert not await store.claim_cancellation(job.job_id, "me", T0 + 5, T0 + LEASE)
    # And its runner still saves the page it was on (the runs it cancelled count) but is told
    # to stop; another owner saves nothing
    assert not await store.record_cancellation_progress(
        job.job_id, "me", 6, cursor, T0 + 4, T0 + LEASE
    )
    assert not await store.record_cancellation_progress(
        job.job_id, "other", 9, cursor, T0 + 4, T0 + LEASE
    )
    ended = await store.get_cancellation(job.job_id)
    assert ended is not None
    assert (ended.state, ended.ended_at, ended.cancelled) == (CancellationState.STOPPED, T0 + 2, 6)


async def test_a_completed_or_failed_job_saves_no_more_progress(store: Store) -> None:
    for state in (CancellationState.COMPLETED, CancellationState.FAILED):
        job = _job()
        await store.create_cancellation(job)
        assert await store.claim_cancellation(job.job_id, "me", T0, T0 + LEASE)
        assert await store.end_cancellation(job.job_id, state, T0 + 1)
        cursor = Cursor(T0 + 7, new_ulid())
        assert not await store.record_cancellation_progress(
            job.job_id, "me", 3, cursor, T0 + 2, T0 + LEASE
        )
        ended = await store.get_cancellation(job.job_id)
        assert ended is not None and (ended.state, ended.cancelled, ended.cursor) == (
            state,
            0,
            None,
        )


async def test_a_job_without_condition_or_progress_reads_back_as_none(store: Store) -> None:
    job = _job(condition=None)
    await store.create_cancellation(job)
    stored = await store.get_cancellation(job.job_id)
    assert stored is not None and stored.condition is None and stored.cursor is None
    assert stored.function_slug == "app-fn"
    await store.end_cancellation(job.job_id, CancellationState.FAILED, T0, "boom")
    failed = await store.get_cancellation(job.job_id)
    assert failed is not None and failed.error == "boom" and failed.state.value == "Failed"


async def test_jobs_list_newest_first_in_keyset_pages(store: Store) -> None:
    # Given five jobs, two of them ended
    jobs = [_job() for _ in range(5)]
    for job in jobs:
        await store.create_cancellation(job)
    await store.end_cancellation(jobs[0].job_id, CancellationState.COMPLETED, T0)
    await store.end_cancellation(jobs[3].job_id, CancellationState.STOPPED, T0)
    # When they are listed two at a time, each page after the previous one's last id
    seen: list[str] = []
    before: str | None = None
    while True:
        page = await store.list_cancellations(2, before)
        seen += [job.job_id for job in page]
        if len(page) < 2:
            break
        before = page[-1].job_id
    # Then each comes once, newest first
    assert seen == sorted((job.job_id for job in jobs), reverse=True)
    # And only the running ones are left to resume, oldest first
    running = await store.running_cancellations()
    assert [job.job_id for job in running] == sorted(
        job.job_id for job in (jobs[1], jobs[2], jobs[4])
    )


async def test_one_owner_runs_a_job_until_its_lease_expires(store: Store) -> None:
    job = _job()
    await store.create_cancellation(job)
    cursor = Cursor(T0 + 7, new_ulid())
    # Given "a" holds the job's lease
    assert await store.claim_cancellation(job.job_id, "a", T0, T0 + 100)
    # Then "b" can neither take it nor save progress while the lease lives
    assert not await store.claim_cancellation(job.job_id, "b", T0 + 50, T0 + 150)
    assert not await store.record_cancellation_progress(
        job.job_id, "b", 1, cursor, T0 + 50, T0 + 150
    )
    # And "a" renews it by saving a page
    assert await store.record_cancellation_progress(job.job_id, "a", 1, cursor, T0 + 90, T0 + 200)
    assert not await store.claim_cancellation(job.job_id, "b", T0 + 150, T0 + 250)
    # When the lease expires, "b" takes the job over and "a" can no longer save
    assert await store.claim_cancellation(job.job_id, "b", T0 + 200, T0 + 300)
    assert not await store.record_cancellation_progress(
        job.job_id, "a", 2, cursor, T0 + 210, T0 + 300
    )
