"""Background jobs that one process runs at a time, under a lease (bulk replays, bulk
cancellations): launching them, taking over those a dead process left, stopping them at close.

A job's progress and lease live in its store row: a kind of job says how to claim a row, which
rows are still running, and how to run one; this class does the rest, once for every kind.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Final, Generic, TypeVar

from headwater.clock import now_ms
from headwater.types import Millis

log = logging.getLogger("headwater.jobs")

#: How long a job's lease lasts without progress; its runner renews it with every page.
JOB_LEASE_MS: Final = 120_000
#: How often a process looks for running jobs no live process holds.
RESUME_INTERVAL_S: Final = 30.0

J = TypeVar("J")


class LeasedJobs(ABC, Generic[J]):
    #: What these jobs are called in task names and logs.
    kind: str = "job"

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._resumer: asyncio.Task[None] | None = None

    # -- what each kind of job provides ------------------------------------------------------------

    @abstractmethod
    def job_id(self, job: J) -> str: ...

    @abstractmethod
    async def claim(self, job_id: str, now: Millis, lease_until: Millis) -> bool:
        """Take the job's lease for this process; False if a live lease is someone else's."""

    @abstractmethod
    async def running_jobs(self) -> Sequence[J]:
        """The jobs whose rows say they are still running (held or not)."""

    @abstractmethod
    async def run_job(self, job: J) -> None: ...

    def forget(self, job_id: str) -> None:
        """The job's task ended (whatever the reason)."""
        self._jobs.pop(job_id, None)

    # -- the common part ---------------------------------------------------------------------------

    async def claim_and_launch(self, job: J) -> None:
        now = now_ms()
        if await self.claim(self.job_id(job), now, now + JOB_LEASE_MS):
            job_id = self.job_id(job)
            task = asyncio.create_task(self.run_job(job), name=f"{self.kind}-{job_id}")
            self._jobs[job_id] = task
            task.add_done_callback(lambda _: self.forget(job_id))

    async def resume(self) -> None:
        """Take over the running jobs no process holds (a stopped server left them)."""
        for job in await self.running_jobs():
            if self.job_id(job) not in self._jobs:
                await self.claim_and_launch(job)

    def start(self) -> None:
        """Resume jobs now and every `RESUME_INTERVAL_S` while the engine runs."""
        if self._resumer is None:
            self._resumer = asyncio.create_task(self._keep_resuming(), name=f"{self.kind}-resume")

    async def _keep_resuming(self) -> None:
        while True:
            try:
                await self.resume()
            except Exception:
                log.exception("resuming the %s jobs failed", self.kind)
            await asyncio.sleep(RESUME_INTERVAL_S)

    async def close(self) -> None:
        if self._resumer is not None:
            self._resumer.cancel()
            await asyncio.gather(self._resumer, return_exceptions=True)
            self._resumer = None
        tasks = list(self._jobs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()
