"""The read verbs the dashboard needs, and replay's records and verbs: a protocol that `Store`
extends, implemented by `SQLiteQueryVerbs` (sqlite_queries.py) and `PostgresQueryVerbs`
(postgres_queries.py).

Every list is a keyset page (newest first, `(created_at, run_id)` descending, the previous page's
last row as the cursor), never an OFFSET, and every count is bounded (`COUNT_CAP`): a page costs
the same with a thousand runs or a million.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from headwater.store.runs import NewRun, RunRecord, RunStatus, StepRecord

if TYPE_CHECKING:
    from headwater.store.base import EventQuery, EventRecord
from headwater.types import Millis

#: Counts stop here: a count of more is shown as "10,000+" rather than scanning every run.
COUNT_CAP: Final = 10_000


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a keyset page ended: its last row's time (a run's creation, an event's receipt) and
    id (a ULID)."""

    at: Millis
    id: str

    def text(self) -> str:
        return f"{self.at}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """ValueError unless `text` is what `text()` makes."""
        at, _, row_id = text.partition(".")
        if not at.isdigit() or len(row_id) != 26:
            raise ValueError("cursor must be the next_cursor of a previous page")
        return cls(int(at), row_id.upper())


@dataclass(frozen=True, slots=True)
class RunQuery:
    """A page of runs, newest first (by creation time, then id)."""

    limit: int = 50
    function_id: str | None = None
    #: Any of these statuses (all when empty).
    statuses: tuple[RunStatus, ...] = ()
    created_after: Millis | None = None  # inclusive
    created_before: Millis | None = None  # exclusive
    #: Only runs after this one in the page order (the previous page's last run).
    cursor: Cursor | None = None

    def where(self, mark: str) -> tuple[str, list[object]]:
        """The WHERE clause ("" when unfiltered) and its parameters, with the dialect's parameter
        mark: the one definition of the filters both backends apply."""
        clauses: list[str] = []
        params: list[object] = []
        if self.function_id is not None:
            clauses.append(f"function_id = {mark}")
            params.append(self.function_id)
        if self.statuses:
            clauses.append(f"status IN ({', '.join([mark] * len(self.statuses))})")
            params += [status.value for status in self.statuses]
        if self.created_after is not None:
            clauses.append(f"created_at >= {mark}")
            params.append(self.created_after)
        if self.created_before is not None:
            clauses.append(f"created_at < {mark}")
            params.append(self.created_before)
        if self.cursor is not None:
            # Row values: one index range on (created_at, run_id), both dialects.
            clauses.append(f"(created_at, run_id) < ({mark}, {mark})")
            params += [self.cursor.at, self.cursor.id]
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def next_cursor(self, page: Sequence[RunRecord]) -> Cursor | None:
        """The cursor of the page after `page` (None when `page` was the last one)."""
        if len(page) < self.limit or not page:
            return None
        return Cursor(page[-1].created_at, page[-1].run_id)


@dataclass(frozen=True, slots=True)
class RunCounts:
    """How many runs (of a function, or of all) were created in a window, by status. Each count
    stops at `cap`."""

    by_status: dict[RunStatus, int] = field(default_factory=dict)
    cap: int = COUNT_CAP

    def count(self, status: RunStatus) -> int:
        return self.by_status.get(status, 0)

    def capped(self, status: RunStatus) -> bool:
        return self.count(status) >= self.cap

    @property
    def approximate(self) -> bool:
        """Whether a count reached the cap (so the total is a lower bound)."""
        return any(count >= self.cap for count in self.by_status.values())

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def failure_rate(self) -> float | None:
        """Failed / (Completed + Failed): the share of finished runs that failed (None before any
        run finished). Approximate when a count reached the cap."""
        finished = self.count(RunStatus.COMPLETED) + self.count(RunStatus.FAILED)
        return self.count(RunStatus.FAILED) / finished if finished else None


@dataclass(frozen=True, slots=True)
class ReplayLink:
    """A replayed run's origin: the run it replays, and where it started."""

    run_id: str
    replay_of: str
    #: The step it restarted from (the steps recorded before it were copied); None: from the start.
    from_step: str | None = None
    #: The bulk replay that made it, if any.
    job_id: str | None = None


class ReplayJobState(StrEnum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    CANCELLED = "Cancelled"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """A bulk replay: every run of `function_id` created in [created_after, created_before) whose
    status is one of `statuses`, replayed page by page in the background."""

    job_id: str
    function_id: str
    created_after: Millis
    created_before: Millis
    statuses: tuple[RunStatus, ...]
    state: ReplayJobState
    #: How many runs matched when the job started (counted up to a million per status).
    total: int
    replayed: int
    created_at: Millis
    updated_at: Millis
    ended_at: Millis | None = None
    #: Where the job has got to: the last run it replayed (it goes newest first).
    cursor: Cursor | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of events newest received first: `filters` as the REST list applies them (its
    `before_id` unused), `cursor` the previous page's last event."""

    filters: EventQuery
    cursor: Cursor | None = None

    def where(self, mark: str) -> tuple[str, list[object]]:
        where, params = self.filters.where(mark)
        if self.cursor is None:
            return where, params
        clause = f"(received_at, internal_id) < ({mark}, {mark})"
        params += [self.cursor.at, self.cursor.id]
        return (f"{where} AND {clause}" if where else f" WHERE {clause}"), params

    def next_cursor(self, page: Sequence[EventRecord]) -> Cursor | None:
        if len(page) < self.filters.limit or not page:
            return None
        return Cursor(page[-1].received_at, page[-1].internal_id)


class QueryVerbs(Protocol):
    """The dashboard's reads and replay's writes (see the module docstring)."""

    async def list_events_received(self, page: EventPage) -> list[EventRecord]:
        """A page of events, newest received first (received_at, then internal_id, descending):
        a time window is an index range whatever the number of events."""

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """A page of runs, newest first (created_at, then run_id, descending)."""

    async def count_runs(
        self,
        function_id: str | None,
        created_after: Millis,
        created_before: Millis,
        cap: int = COUNT_CAP,
    ) -> RunCounts:
        """Runs created in [created_after, created_before) by status, each count at most `cap`."""

    async def create_replay(
        self,
        run: NewRun,
        link: ReplayLink,
        copied_steps: Sequence[StepRecord],
    ) -> RunRecord:
        """In one transaction: create `run` (Queued, as `create_runs` does; no idempotency key),
        store `copied_steps` as its memos (in order) and the link to the replayed run."""

    async def replay_link(self, run_id: str) -> ReplayLink | None: ...

    async def replays_of(self, run_id: str, limit: int = 20) -> list[str]:
        """Ids of the runs replaying `run_id`, newest first."""

    async def create_replay_job(self, job: ReplayJob) -> None: ...

    async def get_replay_job(self, job_id: str) -> ReplayJob | None: ...

    async def list_replay_jobs(
        self, limit: int = 50, before_id: str | None = None
    ) -> list[ReplayJob]:
        """A page of jobs, newest first (by id, a ULID); `before_id`: the previous page's last."""

    async def running_replay_jobs(self, limit: int = 100) -> list[ReplayJob]:
        """Jobs still running (held by a live process or not), oldest first: what a process
        resumes, however many newer jobs have ended since."""

    async def claim_replay_job(
        self, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        """Take (or renew) the lease of a running job: True if `owner` now holds it, False if the
        job has ended or another owner's lease is still live."""

    async def record_replay_progress(
        self,
        job_id: str,
        owner: str,
        replayed: int,
        cursor: Cursor,
        now: Millis,
        lease_until: Millis,
    ) -> bool:
        """Save a running job's progress and renew `owner`'s lease; False if the job is no longer
        running (stopped) or `owner` no longer holds it."""

    async def end_replay_job(
        self, job_id: str, state: ReplayJobState, now: Millis, error: str | None = None
    ) -> bool:
        """Give a running job its final state; False if it had already ended."""


# -- row mapping shared by both dialects ---------------------------------------------------------

REPLAY_JOB_COLUMNS: Final = (
    "job_id, function_id, created_after, created_before, statuses, state, total, replayed,"
    " cursor_created_at, cursor_run_id, error, created_at, updated_at, ended_at"
)


def replay_job_params(job: ReplayJob) -> tuple[object, ...]:
    """A job's values in `REPLAY_JOB_COLUMNS` order."""
    return (
        job.job_id,
        job.function_id,
        job.created_after,
        job.created_before,
        ",".join(status.value for status in job.statuses),
        job.state.value,
        job.total,
        job.replayed,
        job.cursor.at if job.cursor else None,
        job.cursor.id if job.cursor else None,
        job.error,
        job.created_at,
        job.updated_at,
        job.ended_at,
    )


def replay_job_from_row(row: Sequence[object]) -> ReplayJob:
    """A job read back in `REPLAY_JOB_COLUMNS` order."""
    statuses = str(row[4])
    cursor_at, cursor_id = row[8], row[9]
    return ReplayJob(
        job_id=str(row[0]),
        function_id=str(row[1]),
        created_after=int(row[2]),  # type: ignore[call-overload]
        created_before=int(row[3]),  # type: ignore[call-overload]
        statuses=tuple(RunStatus(s) for s in statuses.split(",") if s),
        state=ReplayJobState(str(row[5])),
        total=int(row[6]),  # type: ignore[call-overload]
        replayed=int(row[7]),  # type: ignore[call-overload]
        cursor=Cursor(int(cursor_at), str(cursor_id))  # type: ignore[call-overload]
        if cursor_at is not None
        else None,
        error=None if row[10] is None else str(row[10]),
        created_at=int(row[11]),  # type: ignore[call-overload]
        updated_at=int(row[12]),  # type: ignore[call-overload]
        ended_at=None if row[13] is None else int(row[13]),  # type: ignore[call-overload]
    )
