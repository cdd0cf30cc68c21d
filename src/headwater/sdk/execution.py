"""Running one call of a function: the step core shared by every way a function is executed.

`execute(definition, request)` runs the handler against the memoized steps of `request`:

- a step found in the memo returns its recorded value (or raises StepError) without running;
- a new step runs, then:
  - in-process, with a `checkpoint` (the engine's commit of that step), the result is stored
    before the function goes on: the run goes straight through without replaying (DESIGN.md,
    "speed comes from not replaying");
  - over HTTP, without a checkpoint, the call stops and reports the step (Inngest's protocol);
- a sleep, a wait, an invoke (or a failing step) stops the call with the op for the engine.

Stopping unwinds user code with `Interrupt`, a BaseException, so `except Exception` in user code
cannot swallow it (an `asyncio.TaskGroup` wraps it in a BaseExceptionGroup; `execute` looks inside).
A call ends only once every step body it started has finished and been committed, and it starts
no new step after that.

Every step tool is one coroutine of `Execution`, called on the event loop: the async shell
(`context.Step`) awaits it, the sync shell (`context.StepSync`) runs user code in a thread and hands
each call to the loop. So the rules live once. A `StepPlanner` (HTTP only: `planning.CallPlan`)
is asked before each new step whether it may go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn, Protocol

import orjson

from headwater.clock import now_ms
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
from headwater.sdk.functions import FunctionDefinition, is_field_path, match_expression
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


class StepPlanner(Protocol):
    """Asked by the core before each new step starts; the HTTP protocol's §3.8 rules live in one.

    `op` is what the core would report for the step: StepRun (without data) for `step.run`
    (`runnable`), else the Sleep, WaitForEvent or InvokeFunction op. The planner returns to let
    the step go on (run it, or report it), raises `Interrupt` to end the call (e.g. with a
    StepPlanned op), or parks the step until the call ends. In-process execution has no planner.
    """

    async def reach(self, op: StepOp, *, runnable: bool) -> None: ...


class Execution:
    """The state of one call: memo, step ids handed out so far, step bodies still running.

    Its step methods are coroutines run on the event loop, by both the async and the sync shell.
    """

    def __init__(
        self,
        request: CallRequest,
        checkpoint: Checkpoint | None,
        sender: EventSender | None = None,
        planner: StepPlanner | None = None,
    ) -> None:
        self.request = request
        self.checkpoint = checkpoint
        self.sender = sender
        self.planner = planner
        self.memo: dict[str, JSON] = dict(request.steps)
        self._ids = StepIds()
        self._reached: set[str] = set()
        #: Step bodies started and not yet committed (or failed), by step id.
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        #: When each running step's body began: its record's start (the timeline shows it).
        self._started_at: dict[str, int] = {}
        self._stopped = False

    # -- the step tools --------------------------------------------------------------------------

    async def start_run(self, name: str) -> tuple[str, object]:
        """Enter a `step.run`: its id and memo; if the memo is MISSING, the body may run now and
        must end with `complete` or `failed`."""
        step_id, memo = self._enter(name)
        if memo is not MISSING:
            return step_id, memo
        await self._new_step(step_id, name)
        if self.planner is not None:
            op = StepOp(Opcode.STEP_RUN, step_id, name, display_name=name)
            await self.planner.reach(op, runnable=True)
        self._in_flight[step_id] = asyncio.get_running_loop().create_future()
        self._started_at[step_id] = now_ms()
        return step_id, MISSING

    async def complete(self, step_id: str, name: str, value: Any) -> JSON:
        """A step body returned `value`: store it (in-process) or report it (HTTP)."""
        try:
            data = _to_json(value, f"the result of step {name!r}")
            started_at = self._started_at.pop(step_id, None)
            op = StepOp(Opcode.STEP_RUN, step_id, name, data=data, started_at=started_at)
            if self.checkpoint is None:
                raise Interrupt(op)
            await self.checkpoint(op)
            self.memo[step_id] = {"data": data}
            return data
        finally:
            self._landed(step_id)

    async def failed(self, step_id: str, name: str, exc: BaseException) -> NoReturn:
        """A step body raised `exc`: report the step's error; a BaseException goes on unwinding."""
        self._landed(step_id)
        if not isinstance(exc, Exception):
            raise exc
        no_retry, retry_at = _retry_policy(exc)
        error = _function_error(exc)
        started_at = self._started_at.pop(step_id, None)
        raise Interrupt(
            StepOp(Opcode.STEP_ERROR, step_id, name, error=error.to_json(), started_at=started_at),
            no_retry=no_retry,
            retry_at=retry_at,
        )

    async def sleep_until(self, name: str, until: datetime) -> None:
        """`step.sleep_until`: return at once if the sleep is over, else stop the call."""
        step_id, memo = self._enter(name)
        if memo is not MISSING:
            return
        await self._new_step(step_id, name)
        wake = until if until.tzinfo else until.replace(tzinfo=UTC)
        stamp = wake.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await self._report(
            StepOp(Opcode.SLEEP, step_id, name, display_name=name, opts={"until": stamp})
        )

    async def wait_for_event(
        self,
        name: str,
        *,
        event: str,
        timeout: timedelta | float,
        if_: str | None,
        match: str | None,
        lookback: timedelta | float | None,
    ) -> Event | None:
        """`step.wait_for_event`: the event that resolved the wait (None on timeout), or stop."""
        step_id, memo = self._enter(name)
        if memo is not MISSING:
            return waited_event(memo)
        await self._new_step(step_id, name)
        expression = wait_expression(if_, match)
        opts: JSONObject = {"event": event, "timeout": format_duration(timeout)}
        if expression:
            opts["if"] = expression
        if lookback is not None:
            opts["lookback"] = format_duration(lookback)
        await self._report(
            StepOp(Opcode.WAIT_FOR_EVENT, step_id, event, display_name=name, opts=opts)
        )

    async def invoke(
        self,
        name: str,
        *,
        function: FunctionDefinition | str,
        data: JSONObject | None,
        timeout: timedelta | float | None,
    ) -> JSON:
        """`step.invoke`: the invoked function's recorded result (or StepError), or stop."""
        step_id, memo = self._enter(name)
        if memo is not MISSING:
            return memo_value(name, memo)
        await self._new_step(step_id, name)
        function_id, payload = _slug(function), _payload(data)
        opts: JSONObject = {"function_id": function_id, "payload": {"data": payload}}
        if timeout is not None:
            opts["timeout"] = format_duration(timeout)
        await self._report(
            StepOp(Opcode.INVOKE_FUNCTION, step_id, name, display_name=name, opts=opts)
        )

    async def send_events(self, name: str, events: list[Any]) -> list[str]:
        """The body of `step.send_event`: ids are derived from the run and the step's name."""
        if self.sender is None:
            raise RuntimeError("step.send_event needs the engine's event sender (run in-process)")
        digest = hashlib.sha256(f"{self.request.ctx.run_id}:{name}".encode()).digest()
        seed = IdSeed(ulid_millis(self.request.ctx.run_id), digest[:10])
        return await self.sender(events, seed)

    # -- the end of the call ---------------------------------------------------------------------

    def stop(self) -> None:
        """The call has its answer: a step reached from now on is not started."""
        self._stopped = True

    async def settle(self) -> None:
        """Wait for step bodies still running (parallel siblings of the step that stopped the
        call) to finish and be committed, so that none is lost or runs again next call."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))

    def unreached_steps(self) -> list[str]:
        return [s for s in self.request.ctx.stack if s not in self._reached]

    # -- internals -------------------------------------------------------------------------------

    def _enter(self, name: str) -> tuple[str, object]:
        """Hand out the step's id; return its memo, or MISSING if it has not run yet."""
        if not isinstance(name, str) or not name:
            raise TypeError("a step needs a non-empty string id")
        step_id = self._ids.next(name)
        self._reached.add(step_id)
        return step_id, self.memo.get(step_id, MISSING)

    async def _new_step(self, step_id: str, name: str) -> None:
        """Refuse a new step while recorded ones were skipped (the code took another path), or
        once the call has ended."""
        # Let sibling coroutines (asyncio.gather over steps) reach their memoized steps first.
        await asyncio.sleep(0)
        if self._stopped:
            # A sibling still running after the call ended: the next call finds this step again.
            raise Interrupt(StepOp(Opcode.NONE, step_id, name))
        skipped = self.unreached_steps()
        if skipped and self.request.target_step is None:
            raise NonDeterminismError(
                f"step {name!r} ({step_id}) is new, but {len(skipped)} step(s) recorded by an "
                "earlier attempt were not reached before it: the function no longer follows the "
                "path it took when those steps ran"
            )

    async def _report(self, op: StepOp) -> NoReturn:
        """Stop the call with `op` (a sleep, a wait, an invoke), once the planner lets it."""
        if self.planner is not None:
            await self.planner.reach(op, runnable=False)
        raise Interrupt(op)

    def _landed(self, step_id: str) -> None:
        done = self._in_flight.pop(step_id, None)
        if done is not None and not done.done():
            done.set_result(None)


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


def waited_event(memo: object) -> Event | None:
    """A finished wait's memo: `{"data": event}` (as Inngest stores it), a bare event (as older
    Headwater engines did), or null on timeout."""
    if not isinstance(memo, dict):
        return None
    inner = memo.get("data")
    if "name" not in memo and len(memo) == 1 and isinstance(inner, dict):
        return trigger_event(inner)
    return trigger_event(memo)


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


def wait_expression(if_: str | None, match: str | None) -> str | None:
    """`match: "data.x"` is Inngest's shorthand for `event.data.x == async.data.x`."""
    if if_ is not None and match is not None:
        raise ValueError("give `if_` or `match`, not both")
    if match is None:
        return if_
    if not is_field_path(match):
        raise ValueError(f"match {match!r} must be a dotted field path such as data.accountId")
    return match_expression(match)


async def execute(
    definition: FunctionDefinition,
    request: CallRequest,
    *,
    checkpoint: Checkpoint | None = None,
    threads: ThreadPoolExecutor | None = None,
    sender: EventSender | None = None,
    planner: StepPlanner | None = None,
) -> CallResponse:
    """Run one call of `definition` for `request`; never raises for the function's own errors."""
    from headwater.sdk.context import Context, ContextSync, Step, StepSync

    execution = Execution(request, checkpoint, sender, planner)
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
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        execution.stop()
        interrupt = _interrupt_in(exc)
        if interrupt is None and not isinstance(exc, Exception):
            raise
        await execution.settle()
        if interrupt is not None:
            return CallResponse(
                ops=[interrupt.op], no_retry=interrupt.no_retry, retry_at=interrupt.retry_at
            )
        no_retry, retry_at = _retry_policy(exc)
        return CallResponse(error=_function_error(exc), no_retry=no_retry, retry_at=retry_at)
    execution.stop()
    await execution.settle()
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


def _interrupt_in(exc: BaseException) -> Interrupt | None:
    """The Interrupt that ended the handler: `exc` itself, or the first one in an exception group
    (an `asyncio.TaskGroup` wraps what its tasks raise); other errors beside it are dropped, as
    the next call reaches them again."""
    if isinstance(exc, Interrupt):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    found: BaseException | None = exc.subgroup(Interrupt)
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if isinstance(found, Interrupt) else None


def _slug(function: FunctionDefinition | str) -> str:
    if isinstance(function, FunctionDefinition):
        return function.slug
    if isinstance(function, str) and function:
        return function
    raise TypeError("invoke takes a function definition or its `<app>-<id>` slug")


def _payload(data: JSONObject | None) -> JSONObject:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TypeError("invoke data must be a dict (the invoked function's event data)")
    return data


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
