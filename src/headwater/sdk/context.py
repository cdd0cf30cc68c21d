"""What a function receives: `Context` (async) and `ContextSync`, with their step tools.

`Step` and `StepSync` are thin shells over one core (`execution.Execution`): the async shell awaits
the core directly; the sync shell runs user code in its worker thread and hands each call into the
core to the event loop. Neither holds any rule of its own: a step body is the only code they run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from headwater.protocol.events import Event
from headwater.sdk.execution import MISSING, Execution, duration_until, memo_value
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
        hashed, memo = await core.start_run(step_id)
        if memo is not MISSING:
            return memo_value(step_id, memo)
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            await core.failed(hashed, step_id, exc)
        return await core.complete(hashed, step_id, result)

    async def sleep(self, step_id: str, duration: timedelta | float) -> None:
        """Pause the run for `duration` (a timedelta or seconds); it holds no memory meanwhile."""
        await self.sleep_until(step_id, duration_until(duration))

    async def sleep_until(self, step_id: str, until: datetime) -> None:
        """Pause the run until `until` (an aware datetime; a naive one is taken as UTC)."""
        await self._execution.sleep_until(step_id, until)

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
        return await self._execution.wait_for_event(
            step_id, event=event, timeout=timeout, if_=if_, match=match, lookback=lookback
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
        return await self._execution.invoke(step_id, function=function, data=data, timeout=timeout)

    async def send_event(self, step_id: str, events: Any) -> list[str]:
        """Send one event or a list as a step: returns their ids, and a resumed run does not send
        them again."""
        batch = list(events) if isinstance(events, list | tuple) else [events]
        return list(await self.run(step_id, self._execution.send_events, step_id, batch))


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
        hashed, memo = self._on_loop(core.start_run(step_id))
        if memo is not MISSING:
            return memo_value(step_id, memo)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._on_loop(core.failed(hashed, step_id, exc))
            raise  # unreachable: the core reports the failure by raising
        return self._on_loop(core.complete(hashed, step_id, result))

    def sleep(self, step_id: str, duration: timedelta | float) -> None:
        """See `Step.sleep`."""
        self.sleep_until(step_id, duration_until(duration))

    def sleep_until(self, step_id: str, until: datetime) -> None:
        """See `Step.sleep_until`."""
        self._on_loop(self._execution.sleep_until(step_id, until))

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
        return self._on_loop(
            self._execution.wait_for_event(
                step_id, event=event, timeout=timeout, if_=if_, match=match, lookback=lookback
            )
        )

    def invoke(
        self,
        step_id: str,
        *,
        function: FunctionDefinition | str,
        data: JSONObject | None = None,
        timeout: timedelta | float | None = None,
    ) -> Any:
        """See `Step.invoke`."""
        return self._on_loop(
            self._execution.invoke(step_id, function=function, data=data, timeout=timeout)
        )

    def send_event(self, step_id: str, events: Any) -> list[str]:
        """See `Step.send_event`."""
        batch = list(events) if isinstance(events, list | tuple) else [events]
        core = self._execution
        sent = self.run(step_id, lambda: self._on_loop(core.send_events(step_id, batch)))
        return [str(event_id) for event_id in sent] if isinstance(sent, list) else []


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
