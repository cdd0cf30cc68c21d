"""From accepted events to the runs they start (stored in the same transaction as the events)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from headwater.engine.flow_planning import plan_flow
from headwater.engine.registry import FunctionRegistry
from headwater.protocol.events import NormalizedEvent, event_map
from headwater.protocol.ids import new_ulid
from headwater.store import EventRecord
from headwater.store.runs import NewRun
from headwater.types import JSONObject

#: How long an event's own `id` keeps later events with that id from starting runs (PROTOCOL §1.7).
IDEMPOTENCY_WINDOW_MS: Final = 24 * 3_600_000


def event_wire(record: EventRecord, event: NormalizedEvent) -> JSONObject:
    """The event as functions and expressions see it: `{name, data, user, id, ts, v}`."""
    return event_map(event.name, event.data, event.user, record.id, event.ts, event.v)


class RunPlanner:
    def __init__(self, registry: FunctionRegistry) -> None:
        self.registry = registry

    def plan(
        self, records: Sequence[EventRecord], events: Sequence[NormalizedEvent], now: int
    ) -> list[NewRun]:
        if not len(self.registry):
            return []
        runs: list[NewRun] = []
        for record, event in zip(records, events, strict=True):
            wire = event_wire(record, event)
            functions = self.registry.triggered_by(wire)
            for definition in functions:
                planned = plan_flow(definition, wire, now)
                # Only a sender's own id deduplicates (the internal id is unique anyway), unless
                # the function's `idempotency` expression names the key.
                key = planned.idempotency_key or event.id
                runs.append(
                    NewRun(
                        run_id=new_ulid(),
                        function_id=definition.slug,
                        event_ids=(record.internal_id,),
                        created_at=now,
                        start_at=max(now, event.ts) + planned.delay_ms,
                        idempotency_key=key,
                        idempotency_expires_at=now + IDEMPOTENCY_WINDOW_MS if key else None,
                        flow=planned.flow,
                    )
                )
        return runs
