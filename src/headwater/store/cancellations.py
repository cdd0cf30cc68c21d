"""Bulk cancellations' records and verbs: a protocol that `Store` extends, implemented by
`SQLiteCancellationVerbs` (sqlite_cancellations.py) and `PostgresCancellationVerbs`
(postgres_cancellations.py). The engine's side is engine/cancellations.py.

A job is run by one process at a time under a lease (`claim_cancellation`), renewed with each page
it saves (`record_cancellation_progress`); it ends once (`end_cancellation`): Completed, Stopped
(DELETE /v1/cancellations/{id}) or Failed. A stopped job's runner may still save its last page,
so `cancelled` counts every run it cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from headwater.store.queries import Cursor
from headwater.types import Millis


class CancellationState(StrEnum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    #: Stopped through the API before it was done; the runs it cancelled stay cancelled.
    STOPPED = "Stopped"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class CancellationJob:
    """A bulk cancellation: the active runs of `app_id`'s function `function_id` created in
    [started_after, started_before) whose trigger event satisfies `condition` (every run when
    None), cancelled page by page in the background."""

    job_id: str
    app_id: str
    function_id: str
    started_after: Millis
    started_before: Millis
    condition: str | None
    state: CancellationState
    #: Runs this job has cancelled so far (saved with each page).
    cancelled: int
    created_at: Millis
    updated_at: Millis
    ended_at: Millis | None = None
    #: The last run the job looked at (it goes newest first).
    cursor: Cursor | None = None
    error: str | None = None

    @property
    def function_slug(self) -> str:
        """The function's id across apps, as runs record it."""
        return f"{self.app_id}-{self.function_id}"


class CancellationVerbs(Protocol):
    """The store's side of bulk cancellations (see the module docstring)."""

    async def create_cancellation(self, job: CancellationJob) -> None: ...

    async def get_cancellation(self, job_id: str) -> CancellationJob | None: ...

    async def list_cancellations(
        self, limit: int = 50, before_id: str | None = None
    ) -> list[CancellationJob]:
        """A page of jobs, newest first (by id, a ULID); `before_id`: the previous page's last."""

    async def running_cancellations(self, limit: int = 100) -> list[CancellationJob]:
        """Jobs still Running (held by a process or left by one that died), oldest first."""

    async def claim_cancellation(
        self, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        """Take (or renew) the lease of a running job: True if `owner` now holds it, False if the
        job has ended or another owner's lease is still live."""

    async def record_cancellation_progress(
        self,
        job_id: str,
        owner: str,
        cancelled: int,
        cursor: Cursor,
        now: Millis,
        lease_until: Millis,
    ) -> bool:
        """Save a job's progress and renew `owner`'s lease if `owner` holds it and it is Running,
        or Stopped (so the runs its runner cancelled before it noticed the stop are counted).
        True if the job is still Running: its runner goes on."""

    async def end_cancellation(
        self, job_id: str, state: CancellationState, now: Millis, error: str | None = None
    ) -> bool:
        """Give a running job its final state; False if it had already ended."""


# -- row mapping shared by both dialects ---------------------------------------------------------

CANCELLATION_COLUMNS: Final = (
    "job_id, app_id, function_id, started_after, started_before, condition, state, cancelled,"
    " cursor_created_at, cursor_run_id, error, created_at, updated_at, ended_at"
)


def cancellation_params(job: CancellationJob) -> tuple[object, ...]:
    """A job's values in `CANCELLATION_COLUMNS` order."""
    return (
        job.job_id,
        job.app_id,
        job.function_id,
        job.started_after,
        job.started_before,
        job.condition,
        job.state.value,
        job.cancelled,
        job.cursor.at if job.cursor else None,
        job.cursor.id if job.cursor else None,
        job.error,
        job.created_at,
        job.updated_at,
        job.ended_at,
    )


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer column, read {value!r}")
    return value


def cancellation_from_row(row: Sequence[object]) -> CancellationJob:
    """A job read back in `CANCELLATION_COLUMNS` order."""
    cursor_at, cursor_id = row[8], row[9]
    return CancellationJob(
        job_id=str(row[0]),
        app_id=str(row[1]),
        function_id=str(row[2]),
        started_after=_int(row[3]),
        started_before=_int(row[4]),
        condition=None if row[5] is None else str(row[5]),
        state=CancellationState(str(row[6])),
        cancelled=_int(row[7]),
        cursor=Cursor(_int(cursor_at), str(cursor_id)) if cursor_at is not None else None,
        error=None if row[10] is None else str(row[10]),
        created_at=_int(row[11]),
        updated_at=_int(row[12]),
        ended_at=None if row[13] is None else _int(row[13]),
    )
