"""Invoke a function directly (the dashboard's "invoke"): an `inngest/function.invoked` event
carrying the payload, stored in one transaction with the run it starts, as `step.invoke` does."""

from __future__ import annotations

from collections.abc import Sequence

from headwater.clock import now_ms
from headwater.engine.event_log import EventLog
from headwater.engine.outcomes import INVOKED
from headwater.engine.registry import FunctionRegistry
from headwater.errors import ReplayError
from headwater.protocol.events import NormalizedEvent
from headwater.protocol.ids import new_ulid
from headwater.store import EventRecord
from headwater.store.runs import NewRun
from headwater.types import JSONObject


async def invoke_function(
    event_log: EventLog, registry: FunctionRegistry, function_id: str, data: JSONObject
) -> str:
    """Start a run of `function_id` with `data` as its event's data; returns the run's id.
    ReplayError (code not_found) if no such function is registered."""
    if registry.get(function_id) is None:
        raise ReplayError(f"no function {function_id!r} is registered", "not_found")
    now = now_ms()
    run_id = new_ulid()
    event = NormalizedEvent(
        name=INVOKED,
        data={**data, "_inngest": {"fn_id": function_id, "source": "dashboard"}},
        user={},
        id=None,
        ts=now,
        v=None,
        meta=None,
    )

    def run(records: Sequence[EventRecord]) -> list[NewRun]:
        return [NewRun(run_id, function_id, (records[0].internal_id,), now, now)]

    await event_log.append_system([event], run)
    return run_id
