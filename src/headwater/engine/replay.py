"""Replay: run a finished run's function again on the same events, from the start or from a step.

A replay is a new run (`replay_of` links it to the original) on the same stored events: the same
rows, so the same sealed `user` (opened for the function as for any run, unless it was erased
since), and every event of a batch run. Replaying from a step copies the memos of the steps
recorded before it, so those steps are not executed again.

A bulk replay is a job stored with its progress: the runs of one function created in a window,
with chosen statuses, replayed newest first page by page. It runs in the background of the
engine, can be stopped (by any process: the runner notices at its next page), and resumes after a
restart from its last saved position. One process runs a job at a time, under a lease it renews
with each page; an engine takes over the jobs whose lease expired (their process died) when it
starts and every `RESUME_INTERVAL_S`. The runs of the page in flight when a process dies may be
replayed twice: a page is saved after its runs are created.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Final

from headwater.clock import now_ms
from headwater.engine.event_log import EventLog
from headwater.engine.flow_planning import plan_flow
from headwater.engine.leased_jobs import JOB_LEASE_MS, LeasedJobs
from headwater.engine.registry import FunctionRegistry
from headwater.errors import ReplayError
from headwater.flow.rules import NO_FLOW, RunFlow
from headwater.protocol.ids import new_ulid
from headwater.sdk.functions import FunctionDefinition
from headwater.store import Store
from headwater.store.queries import Cursor, ReplayJob, ReplayJobState, ReplayLink, RunQuery
from headwater.store.runs import NewRun, RunRecord, RunStatus
from headwater.types import Millis

log = logging.getLogger("headwater.replay")

#: Runs replayed per page of a bulk replay; the job's progress is saved (and a stop noticed)
#: after each page.
JOB_PAGE: Final = 50
#: How long a job's runner may go without saving a page before another process may take it over.
#: A job's total is counted once, when it starts, up to this many runs per status.
JOB_COUNT_CAP: Final = 1_000_000


class Replays(LeasedJobs[ReplayJob]):
    kind = "replay"

    def __init__(
        self,
        store: Store,
        event_log: EventLog,
        registry: FunctionRegistry,
        wake: Callable[[], None],
        owner: str,
    ) -> None:
        super().__init__(owner)
        self.store = store
        self.event_log = event_log
        self.registry = registry
        self.wake = wake

    async def replay_run(
        self, run_id: str, from_step: str | None = None, *, job_id: str | None = None
    ) -> RunRecord:
        """Create the replay of a finished run. ReplayError (code not_found, run_active,
        function_missing, step_not_found) when it cannot be."""
        original = await self.store.get_run(run_id)
        if original is None:
            raise ReplayError(f"no run {run_id}", "not_found")
        if not original.status.is_final:
            raise ReplayError(
                f"run {run_id} is still {original.status.value}: replay it once it has ended",
                "run_active",
            )
        definition = self.registry.get(original.function_id)
        if definition is None:
            raise ReplayError(
                f"function {original.function_id!r} is not registered: it cannot be replayed",
                "function_missing",
            )
        copied = []
        if from_step is not None:
            steps = await self.store.list_steps(run_id)
            position = next((i for i, s in enumerate(steps) if s.step_id == from_step), None)
            if position is None:
                known = ", ".join(f"{s.step_id} ({s.name})" for s in steps) or "none"
                raise ReplayError(
                    f"from_step {from_step!r} is not a step of run {run_id}; its steps: {known}",
                    "step_not_found",
                )
            copied = steps[:position]
        now = now_ms()
        flow = await self._replay_flow(definition, original, now)
        replay = NewRun(new_ulid(), original.function_id, original.event_ids, now, now, flow=flow)
        record = await self.store.create_replay(
            replay, ReplayLink(replay.run_id, run_id, from_step, job_id), copied
        )
        self.wake()
        return record

    async def _replay_flow(
        self, definition: FunctionDefinition, original: RunRecord, now: Millis
    ) -> RunFlow:
        """The flow control a replay obeys: the function's concurrency, throttle and priority (a
        bulk replay must not overrun a limit), but no rate limit, singleton or grouping: a replay
        is asked for explicitly, and replays exactly the original's events.

        The keys are those of the function as it is now (a replay runs the current definition,
        as in Inngest) evaluated on the trigger event as the original's were, `user` opened, so
        a replay shares its original's per-user limits. The original's own keys are not kept
        (they live on its queue items, deleted when it ended). A `user` erased since gives the
        keys of an event without one."""
        event = await self.event_log.get(original.event_ids[0]) if original.event_ids else None
        if event is None:
            return NO_FLOW
        flow = plan_flow(definition, event.wire(), now).flow
        return dataclasses.replace(flow, rate_limit=None, singleton=None, group=None)

    # -- bulk replays ------------------------------------------------------------------------

    async def start_job(
        self,
        function_id: str,
        created_after: Millis,
        created_before: Millis,
        statuses: Sequence[RunStatus],
    ) -> ReplayJob:
        """Store a bulk replay and start it. ReplayError (code invalid_request) for a function
        that is not registered, an empty window or a status that is not final."""
        if self.registry.get(function_id) is None:
            raise ReplayError(f"function_id {function_id!r} is not registered", "invalid_request")
        if not statuses:
            raise ReplayError("statuses must name at least one final status", "invalid_request")
        active = [status.value for status in statuses if not status.is_final]
        if active:
            raise ReplayError(
                f"statuses must be final (Completed, Failed, Cancelled, Skipped), not {active}",
                "invalid_request",
            )
        now = now_ms()
        # Runs created from now on (the replays themselves among them) are not part of the job.
        created_before = min(created_before, now)
        if created_after >= created_before:
            raise ReplayError("from must be earlier than to (and than now)", "invalid_request")
        counts = await self.store.count_runs(
            function_id, created_after, created_before, cap=JOB_COUNT_CAP
        )
        job = ReplayJob(
            job_id=new_ulid(),
            function_id=function_id,
            created_after=created_after,
            created_before=created_before,
            statuses=tuple(dict.fromkeys(statuses)),
            state=ReplayJobState.RUNNING,
            total=sum(counts.count(status) for status in set(statuses)),
            replayed=0,
            created_at=now,
            updated_at=now,
        )
        await self.store.create_replay_job(job)
        await self.claim_and_launch(job)
        return job

    async def stop_job(self, job_id: str) -> bool:
        """Stop a running job (it ends Cancelled after the run it is replaying); False if it had
        already ended."""
        stopped = await self.store.end_replay_job(job_id, ReplayJobState.CANCELLED, now_ms())
        task = self._jobs.get(job_id)
        if stopped and task is not None:
            task.cancel()
        return stopped

    # -- LeasedJobs ------------------------------------------------------------------------------

    def job_id(self, job: ReplayJob) -> str:
        return job.job_id

    async def claim(self, job_id: str, now: Millis, lease_until: Millis) -> bool:
        return await self.store.claim_replay_job(job_id, self.owner, now, lease_until)

    async def running_jobs(self) -> list[ReplayJob]:
        return await self.store.running_replay_jobs()

    async def run_job(self, job: ReplayJob) -> None:
        cursor, replayed = job.cursor, job.replayed
        try:
            while True:
                query = RunQuery(
                    limit=JOB_PAGE,
                    function_id=job.function_id,
                    statuses=job.statuses,
                    created_after=job.created_after,
                    created_before=job.created_before,
                    cursor=cursor,
                )
                page = await self.store.list_runs(query)
                for run in page:
                    await self.replay_run(run.run_id, job_id=job.job_id)
                    replayed += 1
                if page:
                    cursor = Cursor(page[-1].created_at, page[-1].run_id)
                    now = now_ms()
                    if not await self.store.record_replay_progress(
                        job.job_id, self.owner, replayed, cursor, now, now + JOB_LEASE_MS
                    ):
                        return  # stopped meanwhile (or taken over after a stall)
                if query.next_cursor(page) is None:
                    await self.store.end_replay_job(job.job_id, ReplayJobState.COMPLETED, now_ms())
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("bulk replay %s failed", job.job_id)
            await self.store.end_replay_job(job.job_id, ReplayJobState.FAILED, now_ms(), str(exc))
