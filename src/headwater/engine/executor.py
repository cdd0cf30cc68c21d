"""One execution of one run: load its state, call the function, act on what comes back.

Every outcome is written before the item's lease is given up, so a crash at any point leaves the
item to be claimed again when its lease expires, and a finished step is never executed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from headwater.clock import now_ms
from headwater.engine.drivers import Driver
from headwater.engine.event_log import EventLog
from headwater.engine.flow_planning import plan_flow
from headwater.engine.outcomes import FINISHED, INVOKED, RunOutcomes
from headwater.engine.registry import FunctionRegistry
from headwater.engine.run_state import load_run_state
from headwater.engine.triggers import event_wire
from headwater.errors import ExpressionError, StepLimitError
from headwater.expr import compile_expression
from headwater.flow.retry import RetryPolicy
from headwater.flow.rules import NO_FLOW
from headwater.protocol.durations import parse_duration_ms
from headwater.protocol.events import NormalizedEvent
from headwater.protocol.ids import IdSeed, new_ulid, ulid_millis
from headwater.protocol.steps import (
    CallContext,
    CallRequest,
    CallResponse,
    FunctionError,
    Opcode,
    StepOp,
)
from headwater.sdk.functions import FunctionDefinition
from headwater.store import EventRecord, Store
from headwater.store.runs import (
    NewRun,
    QueueItem,
    RunRecord,
    RunStatus,
    StepRecord,
    WaitKind,
    WaitRecord,
)
from headwater.types import JSONObject, Millis

if TYPE_CHECKING:
    from headwater.engine.waits import WaitMatcher

log = logging.getLogger("headwater.executor")

#: Inngest's longest wait (PROTOCOL §1.10).
MAX_WAIT_MS: Final = 366 * 86_400_000
_NEVER: Final = 2**62

_EXCLUDED_EVENT_FIELDS: Final = ("internal_id", "received_at", "user_erased", "meta")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-run limits (Inngest's: PROTOCOL §1.10)."""

    max_steps: int = 1_000
    max_step_output_bytes: int = 4 * 1024 * 1024
    max_state_bytes: int = 32 * 1024 * 1024


class Executor:
    def __init__(
        self,
        store: Store,
        event_log: EventLog,
        registry: FunctionRegistry,
        driver: Driver,
        *,
        owner: str,
        lease_ms: int,
        retry: RetryPolicy,
        limits: Limits = Limits(),
        on_reschedule: Callable[[], None] = lambda: None,
        matcher: WaitMatcher | None = None,
        on_wait_name: Callable[[str], None] = lambda name: None,
        outcomes: RunOutcomes | None = None,
    ) -> None:
        self.store = store
        self.event_log = event_log
        self.registry = registry
        self.driver = driver
        self.owner = owner
        self.lease_ms = lease_ms
        self.retry = retry
        self.limits = limits
        self.on_reschedule = on_reschedule
        #: The finish deadline of each item being executed (timeouts.finish): nothing is
        #: rescheduled past it, and the store is told it, so the run wakes at its deadline and is
        #: claimed then to be cancelled, even while a concurrency limit holds its key.
        self._deadlines: dict[str, Millis] = {}
        self.matcher = matcher
        self.outcomes = outcomes or RunOutcomes(store, event_log)
        self.on_wait_name = on_wait_name

    async def run_item(self, item: QueueItem) -> None:
        run = await self.store.get_run(item.run_id)
        if run is None or run.status.is_final:
            await self.store.finish_run(
                item.run_id, item.item_id, self.owner, RunStatus.CANCELLED, now_ms()
            )
            return
        function = self.registry.get(run.function_id)
        if function is None:
            await self._fail(
                run,
                item,
                FunctionError("FunctionNotFound", f"no function {run.function_id!r} is registered"),
            )
            return
        if await self._timed_out(run, item, function):
            return
        if not await self._prepare_waits(run, function):
            return
        request, state_bytes = await self._request(run, item, function.max_attempts)
        recorded = len(request.steps)
        checkpoint_count = 0

        async def checkpoint(op: StepOp) -> None:
            nonlocal checkpoint_count, state_bytes
            memo = orjson.dumps({"data": op.data})
            self._check_limits(recorded + checkpoint_count + 1, len(memo), state_bytes + len(memo))
            # Counted before the await: parallel steps checkpoint concurrently, and each must see
            # its siblings, or together they would pass the limits each checked alone.
            checkpoint_count += 1
            state_bytes += len(memo)
            now = now_ms()
            await self.store.record_step(
                StepRecord(
                    run.run_id,
                    op.id,
                    op.name,
                    Opcode.STEP_RUN.value,
                    memo,
                    op.started_at or now,
                    op.ended_at or now,
                    item.attempt + 1,
                )
            )

        heartbeat = asyncio.create_task(self._keep_lease(item))
        try:
            called_at = now_ms()
            response = await self.driver.call(function, request, checkpoint, self._send_events)
        except StepLimitError as exc:
            response = CallResponse(error=FunctionError("StepLimitError", str(exc)), no_retry=True)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        # Attempts count per step: a step that succeeded in this call starts the count afresh.
        attempt = 0 if checkpoint_count else item.attempt
        try:
            await self._handle(run, item, function.max_attempts, attempt, response, called_at)
        finally:
            self._deadlines.pop(item.item_id, None)

    async def _request(
        self, run: RunRecord, item: QueueItem, max_attempts: int
    ) -> tuple[CallRequest, int]:
        state = await load_run_state(self.store, self.event_log, run, now_ms())
        events, steps, stack = state.events, state.steps, state.stack
        request = CallRequest(
            function_id=run.function_id,
            event=events[0] if events else {},
            events=events,
            steps=steps,
            ctx=CallContext(
                run_id=run.run_id, attempt=item.attempt, max_attempts=max_attempts, stack=stack
            ),
        )
        return request, state.state_bytes

    def _check_limits(self, steps: int, output_bytes: int, state_bytes: int) -> None:
        if steps > self.limits.max_steps:
            raise StepLimitError(f"the run has more than {self.limits.max_steps} steps")
        if output_bytes > self.limits.max_step_output_bytes:
            raise StepLimitError(
                f"a step's output is {output_bytes} bytes; the limit is {self.limits.max_step_output_bytes}"
            )
        if state_bytes > self.limits.max_state_bytes:
            raise StepLimitError(
                f"the run's state is {state_bytes} bytes; the limit is {self.limits.max_state_bytes}"
            )

    async def _handle(
        self,
        run: RunRecord,
        item: QueueItem,
        max_attempts: int,
        attempt: int,
        response: CallResponse,
        called_at: Millis,
    ) -> None:
        """Act on a call's reply. A step it reports ran during the call: since `called_at`, unless
        the step core said when (our SDK, in this process)."""
        now = now_ms()
        if response.done:
            await self.outcomes.finish(
                run, item.item_id, self.owner, RunStatus.COMPLETED, output=response.output
            )
            return
        if response.error is not None:
            retry_at = self.retry.next_attempt_at(
                attempt, max_attempts, now, no_retry=response.no_retry, retry_at=response.retry_at
            )
            if retry_at is None:
                await self._fail(run, item, response.error)
            else:
                await self._reschedule(item, retry_at, attempt + 1)
            return
        if not response.ops:
            # Nothing to do yet (an SDK's empty reply): call again.
            await self._reschedule(item, now, attempt)
            return
        # A reply of several ops holds no step (the driver runs those): two sleeps, a sleep and a
        # wait... The first is acted on; the function reports the others again on the next call.
        op = response.ops[0]
        if op.op is Opcode.STEP_RUN:
            memo = orjson.dumps({"data": op.data})
            await self.store.record_step(
                StepRecord(
                    run.run_id,
                    op.id,
                    op.name,
                    op.op.value,
                    memo,
                    op.started_at or called_at,
                    op.ended_at or now,
                    attempt + 1,
                )
            )
            await self._reschedule(item, now, 0)
        elif op.op in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
            error = FunctionError.from_json(op.error)
            retry_at = None
            if op.op is Opcode.STEP_ERROR:
                retry_at = self.retry.next_attempt_at(
                    attempt,
                    max_attempts,
                    now,
                    no_retry=response.no_retry,
                    retry_at=response.retry_at,
                )
            if retry_at is not None:
                await self._reschedule(item, retry_at, attempt + 1)
            else:
                # The step failed for good: record the error as its memo, so the function sees
                # StepError at that step and may handle it; resume at once.
                memo = orjson.dumps({"error": error.to_json()})
                await self.store.record_step(
                    StepRecord(
                        run.run_id,
                        op.id,
                        op.name,
                        Opcode.STEP_FAILED.value,
                        memo,
                        op.started_at or called_at,
                        op.ended_at or now,
                        attempt + 1,
                    )
                )
                await self._reschedule(item, now, 0)
        elif op.op is Opcode.WAIT_FOR_EVENT:
            await self._wait_for_event(run, item, op, now)
        elif op.op is Opcode.INVOKE_FUNCTION:
            await self._invoke(run, item, op, now)
        elif op.op is Opcode.SLEEP:
            wake = _sleep_wake(op, now)
            # The official SDKs put the wake time or duration in `name`; the step's own name is
            # the display name (ours sends both the same).
            name = op.display_name or op.name
            stored = await self.store.record_step(
                StepRecord(run.run_id, op.id, name, op.op.value, b"null", now, wake, 1)
            )
            if not stored:  # a crash after recording: keep the wake time first recorded
                wake = next(
                    (
                        s.ended_at
                        for s in await self.store.list_steps(run.run_id)
                        if s.step_id == op.id
                    ),
                    wake,
                )
            await self._reschedule(item, wake, 0)
        else:
            await self._fail(
                run,
                item,
                FunctionError(
                    "UnsupportedOperation", f"the {op.op.value} step is not supported yet"
                ),
            )

    async def _timed_out(
        self, run: RunRecord, item: QueueItem, function: FunctionDefinition
    ) -> bool:
        """Cancel a run past its start or finish timeout; note its deadline otherwise. The start
        timeout counts from when the run was due (the store marks a start claimed after its
        deadline overdue), so a run meant to start later is not cancelled for waiting."""
        timeouts = function.timeouts
        if timeouts is None or run.started_at is None:
            return False
        now = now_ms()
        reason = None
        start_ms, finish_ms = timeouts.start_ms, timeouts.finish_ms
        # Finish first: a started run's item is overdue past its finish deadline too.
        if finish_ms is not None and now >= run.started_at + finish_ms:
            reason = f"not finished within its finish timeout ({finish_ms} ms)"
        elif start_ms is not None and item.overdue:
            reason = f"not started within its start timeout ({start_ms} ms)"
        if reason is None:
            if finish_ms is not None:
                self._deadlines[item.item_id] = run.started_at + finish_ms
            return False
        await self.outcomes.finish(
            run, item.item_id, self.owner, RunStatus.CANCELLED, reason=reason
        )
        return True

    async def _prepare_waits(self, run: RunRecord, function: FunctionDefinition) -> bool:
        """Time out expired waits and register the function's cancel rules; False if the run
        turned out to be cancelled by an event that arrived before it could execute."""
        if self.matcher is None:
            return True
        now = now_ms()
        waits = await self.store.waits_of_run(run.run_id)
        await self.matcher.expire(waits, now)
        if function.cancel_on and not any(w.kind is WaitKind.CANCEL for w in waits):
            rules = [
                WaitRecord(
                    wait_id=f"{run.run_id}:cancel:{index}",
                    run_id=run.run_id,
                    kind=WaitKind.CANCEL,
                    event_name=rule.event,
                    expression=rule.expression,
                    created_at=now,
                    expires_at=run.created_at + rule.timeout_ms,
                    match_from=run.created_at,
                )
                for index, rule in enumerate(function.cancel_on)
            ]
            await self.store.add_waits(rules)
            for rule in rules:
                self.on_wait_name(rule.event_name)
                if await self.matcher.scan(rule):
                    return False
        return True

    async def _wait_for_event(
        self, run: RunRecord, item: QueueItem, op: StepOp, now: Millis
    ) -> None:
        opts = op.opts or {}
        event_name = opts.get("event") or op.name
        expression = opts.get("if")
        try:
            timeout_ms = parse_duration_ms(str(opts.get("timeout") or "0s"))
            lookback_ms = parse_duration_ms(str(opts["lookback"])) if opts.get("lookback") else 0
            if not isinstance(event_name, str) or not event_name:
                raise ValueError("a wait needs the name of the event it waits for")
            if expression is not None:
                compile_expression(str(expression))
        except (ValueError, ExpressionError) as exc:
            await self._fail(
                run, item, FunctionError("InvalidWait", f"step {op.display_name or op.id}: {exc}")
            )
            return
        wait = WaitRecord(
            wait_id=f"{run.run_id}:{op.id}",
            run_id=run.run_id,
            kind=WaitKind.STEP,
            event_name=event_name,
            expression=str(expression) if expression is not None else None,
            created_at=now,
            expires_at=min(
                now + min(timeout_ms, MAX_WAIT_MS), self._deadlines.get(item.item_id, _NEVER)
            ),
            step_id=op.id,
            step_name=op.display_name or op.name,
            match_from=now - lookback_ms,
        )
        if not await self.store.park_for_wait(
            item.item_id, self.owner, wait, deadline=self._deadlines.get(item.item_id)
        ):
            log.warning("lost the lease of run %s before it could wait", run.run_id)
            return
        self.on_wait_name(event_name)
        if self.matcher is not None:
            # Events stored before the wait was (or within its lookback) resolve it now.
            for stored in await self.store.waits_of_run(run.run_id):
                if stored.wait_id == wait.wait_id:
                    await self.matcher.scan(stored)
        self.on_reschedule()

    async def _invoke(self, run: RunRecord, item: QueueItem, op: StepOp, now: Millis) -> None:
        """Start the callee's run and park this one until its `inngest/function.finished`."""
        opts = op.opts or {}
        target = opts.get("function_id")
        payload = opts.get("payload")
        data = payload.get("data") if isinstance(payload, dict) else None
        problem = ""
        timeout_ms = MAX_WAIT_MS
        try:
            if opts.get("timeout"):
                timeout_ms = parse_duration_ms(str(opts["timeout"]))
        except ValueError as exc:
            problem = str(exc)
        if not isinstance(target, str) or self.registry.get(target) is None:
            problem = f"no function {target!r} is registered to invoke"
        elif data is not None and not isinstance(data, dict):
            problem = "the invoke payload's data must be an object"
        if problem or not isinstance(target, str):
            # The function sees the failure as a StepError at its invoke step.
            memo = orjson.dumps({"error": {"name": "InvokeError", "message": problem}})
            await self.store.record_step(
                StepRecord(
                    run.run_id, op.id, op.display_name or op.name, op.op.value, memo, now, now
                )
            )
            await self._reschedule(item, now, 0)
            return
        arguments: JSONObject = data if isinstance(data, dict) else {}
        correlation = f"{run.run_id}.{op.id}"
        wait = WaitRecord(
            wait_id=f"{run.run_id}:{op.id}",
            run_id=run.run_id,
            kind=WaitKind.INVOKE,
            event_name=FINISHED,
            expression=f"async.data.correlation_id == '{correlation}'",
            created_at=now,
            expires_at=min(
                now + min(timeout_ms, MAX_WAIT_MS), self._deadlines.get(item.item_id, _NEVER)
            ),
            step_id=op.id,
            step_name=op.display_name or op.name,
            match_from=now,
        )
        # The wait exists before the callee can finish, so its announcement always finds it.
        if not await self.store.park_for_wait(
            item.item_id, self.owner, wait, deadline=self._deadlines.get(item.item_id)
        ):
            log.warning("lost the lease of run %s before it could invoke", run.run_id)
            return
        self.on_wait_name(FINISHED)
        invoked = NormalizedEvent(
            name=INVOKED,
            data={
                **arguments,
                "_inngest": {
                    "fn_id": target,
                    "correlation_id": correlation,
                    "source_run_id": run.run_id,
                    "source_fn_id": run.function_id,
                },
            },
            user={},
            id=None,
            ts=now,
            v=None,
            meta=None,
        )

        def callee(records: Sequence[EventRecord]) -> list[NewRun]:
            # The callee's flow control applies to invoked runs too (concurrency, throttle,
            # priority...), but not grouping: the caller waits for this one run's result.
            flow = NO_FLOW
            definition = self.registry.get(target)
            if definition is not None:
                wire = event_wire(records[0], invoked)
                flow = dataclasses.replace(plan_flow(definition, wire, now).flow, group=None)
            return [NewRun(new_ulid(), target, (records[0].internal_id,), now, now, flow=flow)]

        digest = hashlib.sha256(correlation.encode()).digest()
        await self.event_log.append_system(
            [invoked], callee, seed=IdSeed(ulid_millis(run.run_id), digest[:10])
        )
        self.on_reschedule()

    async def _send_events(self, events: list[Any], seed: IdSeed) -> list[str]:
        return await self.event_log.append(events, seed=seed)

    async def _reschedule(self, item: QueueItem, due_at: Millis, attempt: int) -> None:
        deadline = self._deadlines.get(item.item_id)
        if deadline is not None:
            due_at = min(due_at, deadline)
        if await self.store.reschedule(
            item.item_id, self.owner, due_at, attempt, deadline=deadline
        ):
            self.on_reschedule()
        else:
            log.warning("lost the lease of run %s before rescheduling it", item.run_id)

    async def _fail(self, run: RunRecord, item: QueueItem, error: FunctionError) -> None:
        await self.outcomes.finish(run, item.item_id, self.owner, RunStatus.FAILED, error=error)

    async def _keep_lease(self, item: QueueItem) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            if not await self.store.extend_lease(
                item.item_id, self.owner, now_ms() + self.lease_ms
            ):
                log.warning("lost the lease of run %s while it ran", item.run_id)
                return


def _sleep_wake(op: StepOp, now: Millis) -> Millis:
    """A Sleep op's wake time: `opts.until` (ours), or a date (Python SDK) or a duration (TS SDK,
    e.g. "1s") in `opts.duration` or `name` (PROTOCOL §3.7: a date has at least 10 characters)."""
    candidates = []
    if isinstance(op.opts, dict):
        candidates += [op.opts.get("until"), op.opts.get("duration")]
    candidates.append(op.name)
    for value in candidates:
        if not isinstance(value, str) or not value:
            continue
        if len(value) >= 10:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            return max(now, int(moment.timestamp() * 1000))
        try:
            return now + parse_duration_ms(value)
        except ValueError:
            continue
    return now
