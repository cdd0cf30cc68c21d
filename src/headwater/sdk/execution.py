"""Running one call of a function: the step core shared by every way a function is executed.

`execute(definition, request)` runs the handler against the memoized steps of `request`:

- a step found in the memo returns its recorded value (or raises StepError) without running;
- a new step runs, then:
  - in-process, with a `checkpoint` (the engine's commit of that step), the result is stored
    before the function goes on: the run goes straight through without replaying (DESIGN.md,
    "speed comes from not replaying");
  - over HTTP, without a checkpoint, the call stops and reports the step (Inngest's protocol);
- a sleep (or a failing step) stops the call with the op for the engine to act on.

Stopping unwinds user code with `Interrupt`, a BaseException, so `except Exception` in user code
cannot swallow it. Sync handlers run in a thread; their steps call back into this core on the
event loop (`context.StepSync`), so the rules live once.
"""

from __future__ import annotations

import asyncio
import hashlib
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

import orjson

from headwater.errors import NonDeterminismError, NonRetriableError, RetryAfterError, StepError
from headwater.protocol.durations import format_duration
from headwater.protocol.events import Event
from headwater.protocol.ids import IdSeed, ulid_millis
from headwater.protocol.steps import (
    CallRequest,
    CallResponse,
    FunctionError,
    Opcode,
    StepIds,
    StepOp,
)
from headwater.sdk.functions import FunctionDefinition
from headwater.types import JSON, JSONObject

#: The engine's commit of a finished step: returns once the memo is durable.
Checkpoint = Callable[[StepOp], Awaitable[None]]
#: Sends events for `step.send_event` (in-process: straight into the event log). The seed makes
#: a retried send of the same step get the same ids, so it is stored once.
EventSender = Callable[[list[Any], IdSeed], Awaitable[list[str]]]

#: The memo of a step that has not run yet (None is a real memo: a finished sleep).
MISSING: Final = object()


class Interrupt(BaseException):
    """Unwinds a handler at a step that needs the engine (a sleep, a failure, an HTTP step)."""

    def __init__(self, op: StepOp, *, no_retry: bool = False, retry_at: int | None = None) -> None:
        super().__init__(op.op.value)
        self.op = op
        self.no_retry = no_retry
        self.retry_at = retry_at


class Execution:
    """The state of one call: memo, step ids handed out so far, steps still running."""

    def __init__(
        self,
        request: CallRequest,
        checkpoint: Checkpoint | None,
        sender: EventSender | None = None,
    ) -> None:
        self.request = request
        self.checkpoint = checkpoint
        self.sender = sender
        self.memo: dict[str, JSON] = dict(request.steps)
        self._ids = StepIds()
        self._reached: set[str] = set()
        self._running: set[asyncio.Future[None]] = set()

    # -- the step protocol, called on the event loop by the async and sync shells --------------

    def enter(self, name: str) -> tuple[str, object]:
        """Hand out the step's id; return its memo, or MISSING if it has not run yet."""
        if not isinstance(name, str) or not name:
            raise TypeError("a step needs a non-empty string id")
        step_id = self._ids.next(name)
        self._reached.add(step_id)
        return step_id, self.memo.get(step_id, MISSING)

    async def before_new_step(self, step_id: str, name: str) -> None:
        """Refuse to run a new step while recorded ones were skipped: the code took another path."""
        # Let sibling coroutines (asyncio.gather over steps) reach their memoized steps first.
        await asyncio.sleep(0)
        skipped = [s for s in self.request.ctx.stack if s not in self._reached]
        if skipped and self.request.target_step is None:
            raise NonDeterminismError(
                f"step {name!r} ({step_id}) is new, but {len(skipped)} step(s) recorded by an "
                "earlier attempt were not reached before it: the function no longer follows the "
                "path it took when those steps ran"
            )

    async def complete(self, step_id: str, name: str, value: Any) -> JSON:
        """A new step returned `value`: store it (in-process) or report it (HTTP)."""
        data = _to_json(value, f"the result of step {name!r}")
        op = StepOp(Opcode.STEP_RUN, step_id, name, data=data)
        if self.checkpoint is None:
            raise Interrupt(op)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running.add(done)
        try:
            await self.checkpoint(op)
        finally:
            done.set_result(None)
            self._running.discard(done)
        self.memo[step_id] = {"data": data}
        return data

    def fail(self, step_id: str, name: str, exc: BaseException) -> NoReturn:
        no_retry, retry_at = _retry_policy(exc)
        error = _function_error(exc)
        raise Interrupt(
            StepOp(Opcode.STEP_ERROR, step_id, name, error=error.to_json()),
            no_retry=no_retry,
            retry_at=retry_at,
        )

    def sleep_until(self, step_id: str, name: str, wake: datetime) -> NoReturn:
        stamp = wake.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        raise Interrupt(
            StepOp(Opcode.SLEEP, step_id, name, display_name=name, opts={"until": stamp})
        )

    def wait_for_event(
        self,
        step_id: str,
        name: str,
        *,
        event: str,
        timeout: timedelta | float,
        expression: str | None,
        lookback: timedelta | float | None,
    ) -> NoReturn:
        opts: JSONObject = {"event": event, "timeout": format_duration(timeout)}
        if expression:
            opts["if"] = expression
        if lookback is not None:
            opts["lookback"] = format_duration(lookback)
        raise Interrupt(StepOp(Opcode.WAIT_FOR_EVENT, step_id, event, display_name=name, opts=opts))

    def invoke(
        self,
        step_id: str,
        name: str,
        *,
        function_id: str,
        data: JSONObject,
        timeout: timedelta | float | None,
    ) -> NoReturn:
        opts: JSONObject = {"function_id": function_id, "payload": {"data": data}}
        if timeout is not None:
            opts["timeout"] = format_duration(timeout)
        raise Interrupt(StepOp(Opcode.INVOKE_FUNCTION, step_id, name, display_name=name, opts=opts))

    async def send_events(self, step_id: str, events: list[Any]) -> list[str]:
        """Send events for `step.send_event`, with ids derived from the run and the step."""
        if self.sender is None:
            raise RuntimeError("step.send_event needs the engine's event sender (run in-process)")
        digest = hashlib.sha256(f"{self.request.ctx.run_id}:{step_id}".encode()).digest()
        seed = IdSeed(ulid_millis(self.request.ctx.run_id), digest[:10])
        return await self.sender(events, seed)

    async def settle(self) -> None:
        """Wait for steps still committing (parallel siblings of the step that stopped the call)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def unreached_steps(self) -> list[str]:
        return [s for s in self.request.ctx.stack if s not in self._reached]


def memo_value(step_name: str, memo: object) -> JSON:
    """The value a memoized step gives back to user code (PROTOCOL §3.4 shapes)."""
    if isinstance(memo, dict):
        if "error" in memo and len(memo) == 1:
            error = FunctionError.from_json(memo["error"])
            raise StepError(step_name, error.name, error.message, error.stack)
        if "data" in memo and len(memo) == 1:
            value: JSON = memo["data"]
            return value
    return memo  # type: ignore[return-value]  # legacy/raw memos are the value itself


def trigger_event(wire: JSONObject) -> Event:
    """The `Event` user code sees for a wire event `{name, data, user, id, ts, v}`."""
    data = wire.get("data")
    user = wire.get("user")
    ts = wire.get("ts")
    event_id = wire.get("id")
    version = wire.get("v")
    return Event(
        name=str(wire.get("name", "")),
        data=data if isinstance(data, dict) else {},
        user=user if isinstance(user, dict) else {},
        id=event_id if isinstance(event_id, str) else None,
        ts=ts if isinstance(ts, int) else None,
        v=version if isinstance(version, str) else None,
    )


async def execute(
    definition: FunctionDefinition,
    request: CallRequest,
    *,
    checkpoint: Checkpoint | None = None,
    threads: ThreadPoolExecutor | None = None,
    sender: EventSender | None = None,
) -> CallResponse:
    """Run one call of `definition` for `request`; never raises for the function's own errors."""
    from headwater.sdk.context import Context, ContextSync, Step, StepSync

    execution = Execution(request, checkpoint, sender)
    event = trigger_event(request.event)
    events = [trigger_event(e) for e in request.events]
    common: dict[str, Any] = {
        "event": event,
        "events": events,
        "run_id": request.ctx.run_id,
        "attempt": request.ctx.attempt,
        "function_id": definition.slug,
    }
    loop = asyncio.get_running_loop()
    handler_done: asyncio.Future[Any]
    if definition.is_async:
        handler_done = asyncio.ensure_future(
            definition.handler(Context(**common, step=Step(execution)))
        )
    else:
        context = ContextSync(**common, step=StepSync(execution, loop))
        handler_done = loop.run_in_executor(threads, definition.handler, context)
    try:
        output = await handler_done
    except Interrupt as interrupt:
        await execution.settle()
        return CallResponse(
            ops=[interrupt.op], no_retry=interrupt.no_retry, retry_at=interrupt.retry_at
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await execution.settle()
        no_retry, retry_at = _retry_policy(exc)
        return CallResponse(error=_function_error(exc), no_retry=no_retry, retry_at=retry_at)
    skipped = execution.unreached_steps()
    if skipped and request.target_step is None:
        error = NonDeterminismError(
            f"the function returned without reaching {len(skipped)} step(s) that an earlier "
            "attempt recorded: it no longer follows the path it took when they ran"
        )
        return CallResponse(error=_function_error(error), no_retry=True)
    try:
        result = _to_json(output, "the function's return value")
    except TypeError as exc:
        return CallResponse(error=_function_error(exc), no_retry=True)
    return CallResponse(done=True, output=result)


def duration_until(delay: timedelta | int | float) -> datetime:
    """The wake time of a sleep of `delay` (a timedelta, or seconds) from now."""
    if isinstance(delay, timedelta):
        return datetime.now(UTC) + delay
    if isinstance(delay, int | float) and not isinstance(delay, bool):
        return datetime.now(UTC) + timedelta(seconds=delay)
    raise TypeError(f"a sleep takes a timedelta or a number of seconds, not {delay!r}")


def _to_json(value: Any, what: str) -> JSON:
    """Round-trip through JSON so the first run sees exactly what a replay will."""
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    result: JSON = orjson.loads(encoded)
    return result


def _retry_policy(exc: BaseException) -> tuple[bool, int | None]:
    if isinstance(exc, NonRetriableError | NonDeterminismError):
        return True, None
    if isinstance(exc, StepError):
        # An uncaught StepError fails the function for good: its step already used its attempts.
        return True, None
    if isinstance(exc, RetryAfterError):
        after = exc.retry_after
        if isinstance(after, datetime):
            wake = after if after.tzinfo else after.replace(tzinfo=UTC)
        elif isinstance(after, timedelta):
            wake = datetime.now(UTC) + after
        else:
            wake = datetime.now(UTC) + timedelta(seconds=float(after))
        return False, int(wake.timestamp() * 1000)
    return False, None


def _function_error(exc: BaseException) -> FunctionError:
    if isinstance(exc, StepError):
        return FunctionError(exc.name, exc.original_message, exc.stack)
    stack = "".join(traceback.format_exception(exc))
    return FunctionError(type(exc).__name__, str(exc), stack)
