"""Bulk cancellations (Inngest's `POST /v1/cancellations`): a stored job that cancels a function's
active runs created in a window, those whose trigger event satisfies an optional CEL `if`.

A job runs in the background of the engine, newest run first, page by page over the function's
Queued and Running runs in the window; each run is cancelled through `RunOutcomes.cancel`, so its
end is announced (`inngest/function.cancelled`) as any cancellation is. After each page the job
saves how many runs it cancelled and where it got to. It can be stopped by any process (its runner
stops after the run in hand if it is the same process, else at its next page, and still saves the
count of that page; the runs already cancelled stay cancelled), and resumes after a restart
from its last saved position. One process runs a job at a time, under a lease renewed with each
page; an engine takes over the jobs whose lease expired (their process died) when it starts and
every `RESUME_INTERVAL_S`. The runs a process cancelled in the page in flight when it died are
cancelled but not counted: the process that takes over no longer sees them (they are not active).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from headwater.clock import now_ms
from headwater.engine.event_log import EventLog
from headwater.engine.leased_jobs import JOB_LEASE_MS, LeasedJobs
from headwater.engine.outcomes import RunOutcomes
from headwater.errors import CancellationError, ExpressionError
from headwater.expr import Expression, compile_expression
from headwater.protocol.ids import new_ulid
from headwater.store import Store
from headwater.store.cancellations import CancellationJob, CancellationState
from headwater.store.queries import Cursor, RunQuery
from headwater.store.runs import RunRecord, RunStatus
from headwater.types import Millis

log = logging.getLogger("headwater.cancellations")

#: Runs looked at per page; the job's progress is saved (and a stop noticed) after each page.
JOB_PAGE: Final = 50
#: How long a job's runner may go without saving a page before another process may take it over.
#: How long `stop_job` waits for this process's runner to save its count and stop.
STOP_WAIT_S: Final = 5.0
#: How far in the future `started_before` may be (clock skew between client and server).
FUTURE_SLACK_MS: Final = 5_000
_ACTIVE: Final = (RunStatus.QUEUED, RunStatus.RUNNING)


def _reason(job: CancellationJob) -> str:
    return f"cancelled by bulk cancellation {job.job_id}"


class Cancellations(LeasedJobs[CancellationJob]):
    """Starts, stops and runs the bulk cancellations of one engine process."""

    kind = "cancellation"

    def __init__(
        self, store: Store, event_log: EventLog, outcomes: RunOutcomes, owner: str
    ) -> None:
        super().__init__(owner)
        self.store = store
        self.event_log = event_log
        self.outcomes = outcomes
        #: Jobs of this process stopped through `stop_job`: their runners stop at the next run.
        self._stopping: set[str] = set()

    async def start_job(
        self,
        app_id: str,
        function_id: str,
        started_after: Millis,
        started_before: Millis,
        condition: str | None,
    ) -> CancellationJob:
        """Store a bulk cancellation and start it. CancellationError (code invalid_request or
        invalid_expression) naming what is wrong."""
        now = now_ms()
        if started_before > now + FUTURE_SLACK_MS:
            raise CancellationError("started_before must not be in the future", "invalid_request")
        if started_after >= started_before:
            raise CancellationError(
                "started_after must be earlier than started_before", "invalid_request"
            )
        if condition is not None:
            try:
                compile_expression(condition)
            except ExpressionError as exc:
                raise CancellationError(
                    f"invalid expression in if: {exc}", "invalid_expression"
                ) from None
        job = CancellationJob(
            job_id=new_ulid(),
            app_id=app_id,
            function_id=function_id,
            started_after=started_after,
            started_before=started_before,
            condition=condition,
            state=CancellationState.RUNNING,
            cancelled=0,
            created_at=now,
            updated_at=now,
        )
        await self.store.create_cancellation(job)
        await self.claim_and_launch(job)
        return job

    async def stop_job(self, job_id: str) -> bool:
        """Stop a running job (the runs it cancelled stay cancelled); False if it had already
        ended. When this process runs it, its runner stops after the run in hand and saves its
        count before this returns; a runner in another process stops at its next page."""
        stopped = await self.store.end_cancellation(job_id, CancellationState.STOPPED, now_ms())
        task = self._jobs.get(job_id)
        if stopped and task is not None:
            self._stopping.add(job_id)
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
        return stopped

    # -- LeasedJobs ------------------------------------------------------------------------------

    def job_id(self, job: CancellationJob) -> str:
        return job.job_id

    async def claim(self, job_id: str, now: Millis, lease_until: Millis) -> bool:
        return await self.store.claim_cancellation(job_id, self.owner, now, lease_until)

    async def running_jobs(self) -> list[CancellationJob]:
        return list(await self.store.running_cancellations())

    def forget(self, job_id: str) -> None:
        super().forget(job_id)
        self._stopping.discard(job_id)

    async def _matches(self, expression: Expression | None, run: RunRecord) -> bool:
        """Whether `if` holds for the run's trigger event (its first, for a batch)."""
        if expression is None:
            return True
        trigger = await self.event_log.get(run.event_ids[0]) if run.event_ids else None
        wire = trigger.wire() if trigger is not None else {}
        return expression.matches({"event": wire})

    async def run_job(self, job: CancellationJob) -> None:
        cursor, cancelled = job.cursor, job.cancelled
        try:
            expression = compile_expression(job.condition) if job.condition else None
            while True:
                query = RunQuery(
                    limit=JOB_PAGE,
                    function_id=job.function_slug,
                    statuses=_ACTIVE,
                    created_after=job.started_after,
                    created_before=job.started_before,
                    cursor=cursor,
                )
                page = await self.store.list_runs(query)
                looked = 0
                for run in page:
                    if job.job_id in self._stopping:
                        break
                    if await self._matches(expression, run) and await self.outcomes.cancel(
                        run.run_id, _reason(job)
                    ):
                        cancelled += 1
                    cursor = Cursor(run.created_at, run.run_id)
                    looked += 1
                if looked:
                    assert cursor is not None
                    now = now_ms()
                    if not await self.store.record_cancellation_progress(
                        job.job_id, self.owner, cancelled, cursor, now, now + JOB_LEASE_MS
                    ):
                        return  # stopped meanwhile (or taken over after a stall)
                if job.job_id in self._stopping:
                    return
                if query.next_cursor(page) is None:
                    await self.store.end_cancellation(
                        job.job_id, CancellationState.COMPLETED, now_ms()
                    )
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("bulk cancellation %s failed", job.job_id)
            await self.store.end_cancellation(
                job.job_id, CancellationState.FAILED, now_ms(), str(exc)
            )
