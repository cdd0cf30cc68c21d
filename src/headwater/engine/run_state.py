"""A run's state as SDKs see it: its events and its memoized steps (PROTOCOL §3.3, §3.4).

One loader for the executor, which puts the state in each call, and for `GET /v0/runs/{id}/batch`
and `/actions`, where an SDK fetches it when a call left it out (`use_api`, PROTOCOL §2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from headwater.engine.event_log import EventLog
from headwater.store import Store
from headwater.store.runs import RunRecord
from headwater.types import JSON, JSONObject, Millis


@dataclass(frozen=True, slots=True)
class RunState:
    #: The run's events, oldest first, as functions see them (`StoredEvent.wire()`).
    events: list[JSONObject]
    #: Hashed step id → memo (`{"data": ...}`, `{"error": ...}`, `null`, an event...).
    steps: dict[str, JSON]
    #: The hashed ids of `steps` in the order they completed.
    stack: list[str]
    #: The size of the stored memos, for the state limit.
    state_bytes: int


async def load_run_state(
    store: Store, event_log: EventLog, run: RunRecord, now: Millis
) -> RunState:
    """The run's state at `now`: a sleep that has not ended yet is not a memoized step."""
    events: list[JSONObject] = []
    for event_id in run.event_ids:
        stored = await event_log.get(event_id)
        if stored is not None:
            events.append(stored.wire())
    steps: dict[str, JSON] = {}
    stack: list[str] = []
    state_bytes = 0
    for step in await store.list_steps(run.run_id):
        if step.ended_at > now:  # a sleep still running: not done yet
            continue
        steps[step.step_id] = orjson.loads(step.memo_json)
        stack.append(step.step_id)
        state_bytes += len(step.memo_json)
    return RunState(events, steps, stack, state_bytes)
