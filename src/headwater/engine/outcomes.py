"""How a run ends: its final status, and the system events that announce it (PROTOCOL §1.9).

`inngest/function.finished` follows every Completed or Failed run, `inngest/function.failed` a
Failed one and `inngest/function.cancelled` a Cancelled one, so functions can trigger on them
(`on_failure` handlers do) and `step.invoke` learns its callee's result. Their ids are derived from
the run, so announcing the same end twice stores it once.

The announcement is stored in the transaction that sets the final status (`Store.finish_run`
with `announce`), so no crash can leave a run ended but unannounced.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

import orjson

from headwater.clock import now_ms
from headwater.engine.event_log import EventLog, PreparedAppend, wire_without_user
from headwater.protocol.events import NormalizedEvent
from headwater.protocol.ids import IdSeed, ulid_millis
from headwater.protocol.steps import FunctionError
from headwater.store import Store
from headwater.store.runs import RunRecord, RunStatus
from headwater.types import JSON, JSONObject

log = logging.getLogger("headwater.outcomes")

FINISHED: Final = "inngest/function.finished"
FAILED: Final = "inngest/function.failed"
CANCELLED: Final = "inngest/function.cancelled"
INVOKED: Final = "inngest/function.invoked"


class RunOutcomes:
    def __init__(self, store: Store, event_log: EventLog) -> None:
        self.store = store
        self.event_log = event_log

    async def finish(
        self,
        run: RunRecord,
        item_id: str | None,
        owner: str | None,
        status: RunStatus,
        *,
        output: JSON = None,
        error: FunctionError | None = None,
        reason: str | None = None,
    ) -> bool:
        """Set the final status (guarded by the lease when `item_id` is given) and announce it, in
        one transaction. False if the run was already final or the lease was lost: then nothing is
        announced."""
        try:
            announcement = await self._announcement(run, status, output, error, reason)
        except Exception:  # a bug here must not keep the run from ending
            log.exception(
                "the announcement of run %s cannot be built; ending it without", run.run_id
            )
            announcement = None
        finished = await self.store.finish_run(
            run.run_id,
            item_id,
            owner,
            status,
            now_ms(),
            output_json=orjson.dumps(output) if status is RunStatus.COMPLETED else None,
            error_json=orjson.dumps(error.to_json()) if error is not None else None,
            reason=reason,
            announce=announcement.records if announcement is not None else (),
            announce_runs=announcement.runs if announcement is not None else (),
        )
        if finished and announcement is not None:
            self.event_log.stored(announcement)
        return finished

    async def cancel(self, run_id: str, reason: str) -> bool:
        run = await self.store.get_run(run_id)
        if run is None:
            return False
        return await self.finish(run, None, None, RunStatus.CANCELLED, reason=reason)

    async def _announcement(
        self,
        run: RunRecord,
        status: RunStatus,
        output: JSON,
        error: FunctionError | None,
        reason: str | None,
    ) -> PreparedAppend:
        events: list[JSONObject] = []
        for event_id in run.event_ids:
            # System events are stored in clear: no user object, so none is opened either.
            record = await self.store.get_event(event_id)
            if record is not None:
                events.append(wire_without_user(record))
        data: JSONObject = {
            "function_id": run.function_id,
            "run_id": run.run_id,
            "event": events[0] if events else {},
            "events": list(events),
            "_inngest": {"status": status.value},
        }
        correlation = _correlation_id(events[0]) if events else None
        if correlation is not None:
            data["correlation_id"] = correlation
        if status is RunStatus.COMPLETED:
            data["result"] = output
        elif error is not None:
            data["error"] = error.to_json()
        elif reason is not None:
            data["error"] = {"name": "Cancelled", "message": reason}
        now = now_ms()
        names = {RunStatus.COMPLETED: [FINISHED], RunStatus.FAILED: [FINISHED, FAILED]}
        outcome = [
            NormalizedEvent(
                name, data, {}, run.run_id if name != FINISHED else None, now, None, None
            )
            for name in names.get(status, [CANCELLED])
        ]
        digest = hashlib.sha256(f"{run.run_id}:outcome".encode()).digest()
        return self.event_log.prepare_system(
            outcome, seed=IdSeed(ulid_millis(run.run_id), digest[:10]), received_at=now
        )


def _correlation_id(trigger: JSONObject) -> str | None:
    """The invocation a run answers, if an `inngest/function.invoked` event started it."""
    if trigger.get("name") != INVOKED:
        return None
    data = trigger.get("data")
    meta = data.get("_inngest") if isinstance(data, dict) else None
    value = meta.get("correlation_id") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None
