"""The dialect-independent parts of flow control in the store: queue columns, candidate rows, the
reasons a run is skipped or cancelled. Both backends use these so they agree exactly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from headwater.flow.admission import Candidate
from headwater.flow.rules import ConcurrencySlot, RunFlow, ThrottleRule
from headwater.types import Millis

#: The flow columns of `queue`, in the order of `queue_flow_values`.
QUEUE_FLOW_COLUMNS: Final = (
    "priority_ms, ckey1, climit1, ckey2, climit2,"
    " throttle_key, throttle_limit, throttle_period_ms, throttle_burst, deadline"
)
#: What a claim reads of each candidate, in the order of `candidate_from_row`. `rank` is the
#: queue order (`due_at - priority_ms`), kept for paging through the candidates.
CANDIDATE_COLUMNS: Final = (
    "item_id, run_id, due_at - priority_ms, ckey1, climit1, ckey2, climit2,"
    " throttle_key, throttle_limit, throttle_period_ms, throttle_burst, deadline"
)
#: How many candidates a claim reads at a time (it reads more only if these do not fill it).
CANDIDATE_WINDOW: Final = 256
#: How many windows a claim reads at most: past that, the rest waits for the next claim.
MAX_CANDIDATE_WINDOWS: Final = 8

RATE_LIMITED_REASON: Final = "rate limited"


def singleton_skipped_reason(holder_run_id: str) -> str:
    return f"singleton: run {holder_run_id} is active"


def singleton_replaced_reason(new_run_id: str) -> str:
    return f"singleton: replaced by run {new_run_id}"


def queue_flow_values(flow: RunFlow) -> tuple[object, ...]:
    """A new run's values for `QUEUE_FLOW_COLUMNS`."""
    slots = flow.concurrency
    first = slots[0] if slots else None
    second = slots[1] if len(slots) > 1 else None
    rule = flow.throttle
    return (
        flow.priority_ms,
        first.key if first else None,
        first.limit if first else None,
        second.key if second else None,
        second.limit if second else None,
        rule.key if rule else None,
        rule.limit if rule else None,
        rule.period_ms if rule else None,
        rule.burst if rule else None,
        flow.start_deadline,
    )


def candidate_from_row(row: Sequence[Any], now: Millis) -> tuple[Candidate, int]:
    """A candidate read in `CANDIDATE_COLUMNS` order, and its rank."""
    slots: list[ConcurrencySlot] = []
    if row[3] is not None:
        slots.append(ConcurrencySlot(row[3], int(row[4])))
    if row[5] is not None:
        slots.append(ConcurrencySlot(row[5], int(row[6])))
    throttle = None
    if row[7] is not None:
        throttle = ThrottleRule(row[7], int(row[8]), int(row[9]), int(row[10] or 0))
    overdue = row[11] is not None and int(row[11]) <= now
    return Candidate(row[0], row[1], tuple(slots), throttle, overdue), int(row[2])
