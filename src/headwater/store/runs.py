"""Records of the engine's tables: functions' runs, their memoized steps, and the queue.

These are what the `Store` verbs for runs take and return (see base.py). JSON values travel as
already-encoded bytes, as for events, so each value is encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from headwater.flow.rules import NO_FLOW, RunFlow
from headwater.types import Millis


class RunStatus(StrEnum):
    """A run's state, named as Inngest's REST API names them (PROTOCOL §2.2)."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    #: Not started: deduplicated by the event's `id` (or, later, a flow-control rule).
    SKIPPED = "Skipped"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED})


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create for a function, triggered by one or more stored events."""

    run_id: str
    function_id: str
    event_ids: tuple[str, ...]
    created_at: Millis
    #: When the first attempt may start (an event `ts` in the future delays it).
    start_at: Millis
    #: Deduplication key within the function (the event's own `id`), or None.
    idempotency_key: str | None = None
    #: Until when the key blocks later runs of the same function (24 h after creation).
    idempotency_expires_at: Millis | None = None
    #: What flow control enforces for this run (keys already evaluated).
    flow: RunFlow = NO_FLOW


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    function_id: str
    status: RunStatus
    event_ids: tuple[str, ...]
    created_at: Millis
    started_at: Millis | None = None
    ended_at: Millis | None = None
    output_json: bytes | None = None
    error_json: bytes | None = None
    #: Why a Skipped run did not start, or why a run was cancelled.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A finished step's memo, exactly what the SDKs get back in `steps[id]` (PROTOCOL §3.4)."""

    run_id: str
    step_id: str
    name: str
    op: str
    memo_json: bytes
    started_at: Millis
    ended_at: Millis
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One due execution of a run: its start, a resume after a sleep, or a retry."""

    item_id: str
    run_id: str
    due_at: Millis
    #: 0-based attempt of the step (or start) this execution is for; reset after each step.
    attempt: int = 0
    lease_owner: str | None = None
    lease_until: Millis | None = None
    #: Claimed past its deadline: a run's start past its start deadline (timeouts.start, counted
    #: from when the run was due), or a started run's item past its finish deadline
    #: (timeouts.finish). The executor cancels the run instead of executing it.
    overdue: bool = False


class WaitKind(StrEnum):
    #: `step.wait_for_event`: a matching event resolves the step with that event.
    STEP = "step"
    #: `cancel_on`: a matching event cancels the run.
    CANCEL = "cancel"
    #: `step.invoke`: the callee's `inngest/function.finished` resolves the step with its result.
    INVOKE = "invoke"


@dataclass(frozen=True, slots=True)
class WaitRecord:
    """A run waiting for an event named `event_name` that satisfies `expression` (CEL over
    `event`, the run's trigger event, and `async`, the candidate)."""

    wait_id: str
    run_id: str
    kind: WaitKind
    event_name: str
    expression: str | None
    created_at: Millis
    expires_at: Millis
    #: The step a matching event resolves (kind STEP).
    step_id: str | None = None
    step_name: str | None = None
    #: Events received from this time on are candidates (created_at, or earlier with a lookback).
    match_from: Millis = 0
