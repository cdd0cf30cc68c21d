"""Matching events to runs that wait for them: `step.wait_for_event` resolves, `cancel_on` cancels.

Matching happens when an event is stored (the fast path) and when a wait is stored (a scan of the
events already received since the wait's `match_from`), so an event that lands between the two
is found by one or the other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from headwater.clock import now_ms
from headwater.engine.event_log import EventLog, StoredEvent
from headwater.expr import compile_expression
from headwater.store import EventQuery, Store
from headwater.store.runs import StepRecord, WaitKind, WaitRecord
from headwater.types import JSON, JSONObject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger("headwater.waits")

#: How many stored events a new wait looks at (newest first) when it scans for earlier arrivals.
SCAN_LIMIT = 100


class WaitMatcher:
    def __init__(
        self,
        store: Store,
        event_log: EventLog,
        on_wake: Callable[[], None],
        cancel: Callable[[str, str], Awaitable[bool]],
    ) -> None:
        self.store = store
        self.event_log = event_log
        self.on_wake = on_wake
        #: Cancels a run (and announces it): `cancel(run_id, reason)`.
        self.cancel = cancel

    async def on_events(self, internal_ids: Sequence[str], names: Sequence[str]) -> None:
        """New events were stored: resolve or cancel whatever waits for them."""
        now = now_ms()
        for name in dict.fromkeys(names):
            waits = await self.store.pending_waits(name, now)
            if not waits:
                continue
            candidates = [
                e
                for e in [
                    await self.event_log.get(i)
                    for i, n in zip(internal_ids, names, strict=True)
                    if n == name
                ]
                if e is not None
            ]
            for wait in waits:
                await self._try(wait, candidates)

    async def scan(self, wait: WaitRecord) -> bool:
        """Look among stored events for one this (new) wait accepts; True if it was resolved."""
        events = await self.event_log.list(
            EventQuery(limit=SCAN_LIMIT, name=wait.event_name, received_after=wait.match_from)
        )
        return await self._try(wait, list(reversed(events)))  # oldest first

    async def _try(self, wait: WaitRecord, candidates: Sequence[StoredEvent]) -> bool:
        candidates = [e for e in candidates if e.received_at >= wait.match_from]
        if not candidates:
            return False
        trigger = await self._trigger_event(wait.run_id)
        if trigger is None:
            return False
        expression = compile_expression(wait.expression) if wait.expression else None
        for candidate in candidates:
            wire = candidate.wire()
            if expression is None or expression.matches({"event": trigger, "async": wire}):
                return await self._resolve(wait, candidate, wire)
        return False

    async def _resolve(self, wait: WaitRecord, event: StoredEvent, wire: JSONObject) -> bool:
        now = now_ms()
        if wait.kind is WaitKind.CANCEL:
            cancelled = await self.cancel(
                wait.run_id, f"cancelled by event {event.internal_id} ({event.name})"
            )
            await self.store.delete_wait(wait.wait_id)
            return cancelled
        # Stored as Inngest stores a resolved wait (the SDKs read the event from `data`).
        memo: JSON = {"data": wire}
        op = "WaitForEvent"
        if wait.kind is WaitKind.INVOKE:
            # The callee's announcement carries its result or error (PROTOCOL §3.4 memo shapes).
            data = event.data
            memo = {"error": data["error"]} if "error" in data else {"data": data.get("result")}
            op = "InvokeFunction"
        step = StepRecord(
            wait.run_id,
            wait.step_id or "",
            wait.step_name or wait.event_name,
            op,
            orjson.dumps(memo),
            wait.created_at,
            now,
        )
        resolved = await self.store.resolve_step_wait(wait.wait_id, step, now)
        if resolved:
            self.on_wake()
        return resolved

    async def _trigger_event(self, run_id: str) -> JSONObject | None:
        run = await self.store.get_run(run_id)
        if run is None or run.status.is_final or not run.event_ids:
            return None
        event = await self.event_log.get(run.event_ids[0])
        return event.wire() if event is not None else None

    async def expire(self, waits: Sequence[WaitRecord], now: int) -> None:
        """Resolve step waits whose timeout passed with null (the SDKs read it as "timed out")."""
        for wait in waits:
            if wait.kind is not WaitKind.CANCEL and wait.expires_at <= now:
                memo = b"null"
                if wait.kind is WaitKind.INVOKE:
                    memo = orjson.dumps(
                        {
                            "error": {
                                "name": "InvokeTimeoutError",
                                "message": "timed out waiting for the invoked function to finish",
                            }
                        }
                    )
                step = StepRecord(
                    wait.run_id,
                    wait.step_id or "",
                    wait.step_name or wait.event_name,
                    "InvokeFunction" if wait.kind is WaitKind.INVOKE else "WaitForEvent",
                    memo,
                    wait.created_at,
                    now,
                )
                await self.store.resolve_step_wait(wait.wait_id, step, now)
