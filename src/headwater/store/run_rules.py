"""The dialect-independent rules of the run verbs, shared by both backends so they agree exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from headwater.protocol.ids import new_ulid
from headwater.store.runs import NewRun, RunRecord, RunStatus, WaitKind, WaitRecord

#: The reason of a run skipped because its idempotency key is held (Inngest's wording).
DUPLICATE_REASON: Final = "duplicate event id"

#: Statuses a run can leave; every other status is final and never changes again.
ACTIVE_STATUSES: Final = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
#: The same as an SQL list, for `status IN ...` (the same text in both dialects).
ACTIVE_IN: Final = f"('{ACTIVE_STATUSES[0]}', '{ACTIVE_STATUSES[1]}')"


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A run of a `create_runs` batch with what the batch itself decides about it."""

    run: NewRun
    #: The id of its queue item, used only if it ends up Queued.
    item_id: str
    #: A later run of the batch with the same (function, key) as an earlier one: Skipped whatever
    #: the database holds. The first one alone tries to claim the key.
    duplicate_in_batch: bool

    @property
    def claims_key(self) -> bool:
        """Whether this run must claim its idempotency key (and is Skipped if that fails)."""
        return self.run.idempotency_key is not None and not self.duplicate_in_batch


def plan_runs(runs: Sequence[NewRun]) -> list[PlannedRun]:
    """Mark the in-batch duplicates: of runs sharing (function, key) in one call the first wins.

    Deciding this before the database is involved keeps the dialects alike (PostgreSQL claims the
    keys of a batch in one upsert, which may not touch a key twice) and means a later duplicate is
    Skipped even if its own `created_at` were past the first one's expiry.

    A run id given twice is refused (ValueError): a caller's bug, which the dialects would
    otherwise report differently.
    """
    if len({run.run_id for run in runs}) != len(runs):
        raise ValueError("create_runs got the same run_id twice")
    seen: set[tuple[str, str]] = set()
    planned: list[PlannedRun] = []
    for run in runs:
        duplicate = False
        if run.idempotency_key is not None:
            key = (run.function_id, run.idempotency_key)
            duplicate = key in seen
            seen.add(key)
        planned.append(PlannedRun(run, new_ulid(), duplicate))
    return planned


def new_run_record(run: NewRun, status: RunStatus, reason: str | None = None) -> RunRecord:
    """The record of a run this call created: Queued, or Skipped (a duplicate unless `reason`
    says otherwise), which is final at once, so it ends when it is created."""
    if status is RunStatus.SKIPPED:
        return RunRecord(
            run_id=run.run_id,
            function_id=run.function_id,
            status=status,
            event_ids=run.event_ids,
            created_at=run.created_at,
            ended_at=run.created_at,
            reason=reason or DUPLICATE_REASON,
        )
    return RunRecord(
        run_id=run.run_id,
        function_id=run.function_id,
        status=status,
        event_ids=run.event_ids,
        created_at=run.created_at,
    )


def require_final(status: RunStatus) -> None:
    """`finish_run` only sets final statuses: a Queued or Running "finish" is a caller's bug."""
    if not status.is_final:
        raise ValueError(f"finish_run needs a final status, not {status.value}")


#: The columns of `waits`, in the order of `wait_params` and `wait_from_row`.
WAIT_COLUMNS: Final = (
    "wait_id, run_id, kind, event_name, expression, created_at, expires_at, step_id, step_name,"
    " match_from"
)


def wait_params(wait: WaitRecord) -> tuple[object, ...]:
    """A wait's values in `WAIT_COLUMNS` order, for either dialect's INSERT."""
    return (
        wait.wait_id,
        wait.run_id,
        wait.kind.value,
        wait.event_name,
        wait.expression,
        wait.created_at,
        wait.expires_at,
        wait.step_id,
        wait.step_name,
        wait.match_from,
    )


def wait_from_row(row: Sequence[Any]) -> WaitRecord:
    """A wait read back in `WAIT_COLUMNS` order."""
    return WaitRecord(
        wait_id=row[0],
        run_id=row[1],
        kind=WaitKind(row[2]),
        event_name=row[3],
        expression=row[4],
        created_at=int(row[5]),
        expires_at=int(row[6]),
        step_id=row[7],
        step_name=row[8],
        match_from=int(row[9]),
    )
