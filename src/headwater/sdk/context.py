"""What a function receives: `Context` (async) and `ContextSync`, with their step tools.

`Step` and `StepSync` are thin shells over one core (`execution.Execution`): the async shell awaits
the core directly; the sync shell runs user code in its worker thread and hands each call into the
core to the event loop. Neither holds any rule of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from headwater.protocol.events import Event
from headwater.sdk.execution import (
    MISSING,
    Execution,
    duration_until,
    memo_value,
    trigger_event,
)
from headwater.sdk.functions import FunctionDefinition
from headwater.types import JSON, JSONObject

T = TypeVar("T")


class Step:
    """Durable steps for async functions. Each step's id must be unique within the function, or
    repeat in the same order on every attempt (repeats are numbered, as Inngest numbers them)."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    async def run(self, step_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` (sync or async) once for this run and return its result;
        on a resumed run, return the recorded result without calling `fn`. The result must be
        JSON-serialisable. A failure is retried at this step; after the last attempt the step
        raises StepError here."""
        core = self._execution
        hashed, memo = core.enter(step_id)
        if memo is not MISSING:
            return memo_value(step_id, memo)
        await core.before_new_step(hashed, step_id)
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            core.fail(hashed, step_id, exc)
        return await core.complete(hashed, step_id, result)

    async def sleep(self, step_id: str, duration: timedelta | float) -> None:
        """Pause the run for `duration` (a timedelta or seconds); it holds no memory meanwhile."""
        await self.sleep_until(step_id, duration_until(duration))

    async def sleep_until(self, step_id: str, until: datetime) -> None:
        """Pause the run until `until` (an aware datetime; a naive one is taken as UTC)."""
        core = self._execution
        hashed, memo = core.enter(step_id)
        if memo is not MISSING:
            return
        await core.before_new_step(hashed, step_id)
        core.sleep_until(hashed, step_id, until if until.tzinfo else until.replace(tzinfo=UTC))

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: timedelta | float,
        if_: str | None = None,
        match: str | None = None,
        lookback: timedelta | float | None = None,
    ) -> Event | None:
        """Pause until an event named `event` arrives that satisfies `if_` (CEL over `event`, this
        run's trigger, and `async`, the candidate) or `match` (a field both must share, e.g.
        "data.accountId"); return it, or None after `timeout`. With `lookback`, events received up
        to that long before the wait began also count (Inngest has no such option)."""
        core = self._execution
        hashed, memo = core.enter(step_id)
        if memo is not MISSING:
            return trigger_event(memo) if isinstance(memo, dict) else None
        await core.before_new_step(hashed, step_id)
        core.wait_for_event(
            hashed,
            step_id,
            event=event,
            timeout=timeout,
            expression=wait_expression(if_, match),
            lookback=lookback,
        )

    async def invoke(
        self,
        step_id: str,
        *,
        function: FunctionDefinition | str,
        data: JSONObject | None = None,
        timeout: timedelta | float | None = None,
    ) -> Any:
        """Run another function (a definition, or its `<app>-<id>` slug) with `data` as its
        event's data, and return its result; its failure raises StepError here."""
        core = self._execution
        hashed, memo = core.enter(step_id)
        if memo is not MISSING:
            return memo_value(step_id, memo)
        await core.before_new_step(hashed, step_id)
        core.invoke(
            hashed, step_id, function_id=_slug(function), data=_payload(data), timeout=timeout
        )

    async def send_event(self, step_id: str, events: Any) -> list[str]:
        """Send one event or a list as a step: returns their ids, and a resumed run does not send
        them again."""
        batch = list(events) if isinstance(events, list | tuple) else [events]
        core = self._execution
        return list(await self.run(step_id, core.send_events, step_id, batch))


class StepSync:
    """Durable steps for sync functions (run in a worker thread): the same rules as `Step`."""

    def __init__(self, execution: Execution, loop: asyncio.AbstractEventLoop) -> None:
        self._execution = execution
        self._loop = loop

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def run(self, step_id: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | JSON:
        """Run `fn(*args, **kwargs)` once for this run and return its result (see `Step.run`)."""
        core = self._execution
        hashed, memo = self._on_loop(_enter(core, step_id))
        if memo is not MISSING:
            return memo_value(step_id, memo)
        self._on_loop(core.before_new_step(hashed, step_id))
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._on_loop(_fail(core, hashed, step_id, exc))
            raise  # unreachable: _fail always raises
        return self._on_loop(core.complete(hashed, step_id, result))

    def sleep(self, step_id: str, duration: timedelta | float) -> None:
        self.sleep_until(step_id, duration_until(duration))

    def sleep_until(self, step_id: str, until: datetime) -> None:
        core = self._execution
        hashed, memo = self._on_loop(_enter(core, step_id))
        if memo is not MISSING:
            return
        self._on_loop(core.before_new_step(hashed, step_id))
        self._on_loop(_sleep(core, hashed, step_id, until))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: timedelta | float,
        if_: str | None = None,
        match: str | None = None,
        lookback: timedelta | float | None = None,
    ) -> Event | None:
        """See `Step.wait_for_event`."""
        core = self._execution
        hashed, memo = self._on_loop(_enter(core, step_id))
        if memo is not MISSING:
            return trigger_event(memo) if isinstance(memo, dict) else None
        self._on_loop(core.before_new_step(hashed, step_id))
        expression = wait_expression(if_, match)
        self._on_loop(_wait(core, hashed, step_id, event, timeout, expression, lookback))
        return None  # unreachable: the wait always interrupts

    def invoke(
        self,
        step_id: str,
        *,
        function: FunctionDefinition | str,
        data: JSONObject | None = None,
        timeout: timedelta | float | None = None,
    ) -> Any:
        """See `Step.invoke`."""
        core = self._execution
        hashed, memo = self._on_loop(_enter(core, step_id))
        if memo is not MISSING:
            return memo_value(step_id, memo)
        self._on_loop(core.before_new_step(hashed, step_id))
        self._on_loop(_invoke(core, hashed, step_id, _slug(function), _payload(data), timeout))
        return None  # unreachable: the invoke always interrupts

    def send_event(self, step_id: str, events: Any) -> list[str]:
        """See `Step.send_event`."""
        batch = list(events) if isinstance(events, list | tuple) else [events]
        core = self._execution
        sent = self.run(step_id, lambda: self._on_loop(core.send_events(step_id, batch)))
        return [str(event_id) for event_id in sent] if isinstance(sent, list) else []


async def _wait(
    core: Execution,
    hashed: str,
    step_id: str,
    event: str,
    timeout: timedelta | float,
    expression: str | None,
    lookback: timedelta | float | None,
) -> None:
    core.wait_for_event(
        hashed, step_id, event=event, timeout=timeout, expression=expression, lookback=lookback
    )


async def _invoke(
    core: Execution,
    hashed: str,
    step_id: str,
    function_id: str,
    data: JSONObject,
    timeout: timedelta | float | None,
) -> None:
    core.invoke(hashed, step_id, function_id=function_id, data=data, timeout=timeout)


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


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def wait_expression(if_: str | None, match: str | None) -> str | None:
    """`match: "data.x"` is Inngest's shorthand for `event.data.x == async.data.x`."""
    if if_ is not None and match is not None:
        raise ValueError("give `if_` or `match`, not both")
    if match is None:
        return if_
    if not _FIELD.match(match):
        raise ValueError(f"match {match!r} must be a dotted field path such as data.accountId")
    return f"event.{match} == async.{match}"


async def _enter(core: Execution, step_id: str) -> tuple[str, object]:
    return core.enter(step_id)


async def _fail(core: Execution, hashed: str, step_id: str, exc: Exception) -> None:
    core.fail(hashed, step_id, exc)


async def _sleep(core: Execution, hashed: str, step_id: str, until: datetime) -> None:
    core.sleep_until(hashed, step_id, until if until.tzinfo else until.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class Context:
    """What an async function receives."""

    event: Event
    events: list[Event]
    run_id: str
    attempt: int
    function_id: str
    step: Step


@dataclass(frozen=True, slots=True)
class ContextSync:
    """What a sync function receives; `step` blocks instead of being awaited."""

    event: Event
    events: list[Event]
    run_id: str
    attempt: int
    function_id: str
    step: StepSync
