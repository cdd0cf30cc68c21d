"""Function definitions: triggers, options, and the handler, as `@hw.function(...)` records them.

A definition is plain data plus a callable; the engine (in-process) and `serve()` (over HTTP) both
run it through `execution.execute`. Validation happens here, when the function is defined, so a
bad trigger or expression fails at import time rather than at the first event.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from headwater.errors import ExpressionError, FunctionDefinitionError
from headwater.types import JSON

if TYPE_CHECKING:
    from headwater.sdk.context import Context, ContextSync
    from headwater.sdk.flow_options import FlowOptions

MAX_TRIGGERS: Final = 10
MAX_RETRIES: Final = 20
DEFAULT_RETRIES: Final = 4
MAX_CANCELS: Final = 5
#: Inngest's longest cancellation window (PROTOCOL §1.10).
MAX_CANCEL_MS: Final = 365 * 86_400_000
_FIELD_PATH: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_field_path(text: str) -> bool:
    """A dotted path of identifiers, e.g. `data.accountId` (what a `match` names)."""
    return bool(_FIELD_PATH.match(text))


def match_expression(field: str) -> str:
    """Inngest's `match: "data.x"` shorthand: `event.data.x == async.data.x`."""
    return f"event.{field} == async.{field}"


_FUNCTION_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
# Wildcards may stand only for whole segments after "/" or "." (Inngest's rule): app/*, app/user.*
_EVENT_PATTERN: Final = re.compile(r"^[^*]+([/.]\*)?$")


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """Run on events named `event` (a trailing `/*` or `.*` matches a family of names), when the
    CEL expression `if_` (seeing `event`) is true."""

    event: str
    if_: str | None = None

    def __post_init__(self) -> None:
        if not self.event or len(self.event) > 255 or not _EVENT_PATTERN.match(self.event):
            raise FunctionDefinitionError(
                f"trigger event {self.event!r} is invalid: use a name, or a name ending in "
                "'/*' or '.*' (a wildcard may only follow '/' or '.')"
            )
        if self.if_ is not None:
            check_expression(self.if_, f"the `if` of trigger {self.event!r}")

    def matches_name(self, name: str) -> bool:
        if self.event.endswith("*"):
            return name.startswith(self.event[:-1])
        return name == self.event

    def to_wire(self) -> dict[str, str]:
        wire = {"event": self.event}
        if self.if_:
            wire["expression"] = self.if_
        return wire


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Run on a schedule: five cron fields, optionally prefixed `TZ=Europe/Paris `."""

    cron: str

    def __post_init__(self) -> None:
        _check_cron(self.cron)

    def to_wire(self) -> dict[str, str]:
        return {"cron": self.cron}


@dataclass(frozen=True, slots=True)
class CancelOn:
    """Cancel a run when an event named `event` arrives that satisfies `if_` (CEL over `event`,
    the run's trigger, and `async`, the candidate) or `match` (a shared field such as
    "data.accountId"), within `timeout` (seconds or a timedelta) of the run's start."""

    event: str
    if_: str | None = None
    match: str | None = None
    timeout: timedelta | float | None = None

    def __post_init__(self) -> None:
        if not self.event or "*" in self.event:
            raise FunctionDefinitionError(f"cancel event {self.event!r} must be an event name")
        if self.if_ is not None and self.match is not None:
            raise FunctionDefinitionError("a cancel rule takes `if_` or `match`, not both")
        if self.match is not None and not is_field_path(self.match):
            raise FunctionDefinitionError(
                f"cancel match {self.match!r} must be a dotted field path such as data.accountId"
            )
        if self.if_ is not None:
            check_expression(self.if_, f"the `if` of cancel event {self.event!r}")

    @property
    def expression(self) -> str | None:
        if self.match is not None:
            return match_expression(self.match)
        return self.if_

    @property
    def timeout_ms(self) -> int:
        if self.timeout is None:
            return MAX_CANCEL_MS
        return min(MAX_CANCEL_MS, int(seconds_of(self.timeout) * 1000))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """`start`: cancel a run not started this long after it was queued; `finish`: cancel a run
    not finished this long after it started (seconds or timedeltas)."""

    start: timedelta | float | None = None
    finish: timedelta | float | None = None

    def __post_init__(self) -> None:
        for name in ("start", "finish"):
            value = getattr(self, name)
            if value is not None and seconds_of(value) <= 0:
                raise FunctionDefinitionError(f"timeouts.{name} must be positive, got {value!r}")

    @property
    def start_ms(self) -> int | None:
        return None if self.start is None else int(seconds_of(self.start) * 1000)

    @property
    def finish_ms(self) -> int | None:
        return None if self.finish is None else int(seconds_of(self.finish) * 1000)


def seconds_of(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


Trigger: TypeAlias = EventTrigger | CronTrigger
Handler: TypeAlias = (
    "Callable[[Context], Awaitable[JSON | Any]] | Callable[[ContextSync], JSON | Any]"
)


@dataclass(frozen=True, slots=True)
class FunctionDefinition:
    """One durable function of an app."""

    app_id: str
    id: str
    handler: Callable[..., Any]
    triggers: tuple[Trigger, ...] = ()
    name: str = ""
    retries: int = DEFAULT_RETRIES
    is_async: bool = field(default=True)
    cancel_on: tuple[CancelOn, ...] = ()
    timeouts: Timeouts | None = None
    #: Where a remote app serves this function over the Inngest protocol (set for functions
    #: synced through POST /fn/register, whose `handler` is only a placeholder); None for a
    #: function run in this process.
    url: str | None = None
    #: Concurrency, throttle, rate limit, debounce, batching, priority, singleton, idempotency.
    flow: FlowOptions | None = None

    @property
    def slug(self) -> str:
        """The id Inngest uses on the wire and in its API: `<app id>-<function id>`."""
        return f"{self.app_id}-{self.id}"

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @property
    def event_triggers(self) -> tuple[EventTrigger, ...]:
        return tuple(t for t in self.triggers if isinstance(t, EventTrigger))

    @property
    def cron_triggers(self) -> tuple[CronTrigger, ...]:
        return tuple(t for t in self.triggers if isinstance(t, CronTrigger))


def define_function(
    app_id: str,
    handler: Callable[..., Any],
    *,
    id: str,
    triggers: Sequence[Trigger],
    name: str | None = None,
    retries: int = DEFAULT_RETRIES,
    cancel_on: Sequence[CancelOn] = (),
    timeouts: Timeouts | None = None,
    flow: FlowOptions | None = None,
) -> FunctionDefinition:
    if not _FUNCTION_ID.match(id):
        raise FunctionDefinitionError(
            f"function id {id!r} must be 1-128 characters of letters, digits, '_', '.', ':', '-'"
        )
    if len(triggers) > MAX_TRIGGERS:
        raise FunctionDefinitionError(
            f"function {id!r} has {len(triggers)} triggers; the limit is {MAX_TRIGGERS}"
        )
    if len(set(triggers)) != len(triggers):
        raise FunctionDefinitionError(f"function {id!r} lists the same trigger twice")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise FunctionDefinitionError(
            f"function {id!r}: retries must be an integer from 0 to {MAX_RETRIES}, got {retries!r}"
        )
    if len(cancel_on) > MAX_CANCELS:
        raise FunctionDefinitionError(
            f"function {id!r} has {len(cancel_on)} cancel rules; the limit is {MAX_CANCELS}"
        )
    if not callable(handler):
        raise FunctionDefinitionError(f"function {id!r}: the handler is not callable")
    if flow is not None and flow.batch is not None and cancel_on:
        raise FunctionDefinitionError(
            f"function {id!r}: batching cannot be combined with cancel_on"
        )
    return FunctionDefinition(
        app_id=app_id,
        id=id,
        handler=handler,
        triggers=tuple(triggers),
        name=name or id,
        retries=retries,
        is_async=inspect.iscoroutinefunction(handler),
        cancel_on=tuple(cancel_on),
        timeouts=timeouts,
        flow=flow,
    )


def check_expression(source: str, where: str) -> None:
    try:
        from headwater.expr import compile_expression
    except ImportError:  # the client-only install has no CEL engine; the server checks it
        return
    try:
        compile_expression(source)
    except ExpressionError as exc:
        raise FunctionDefinitionError(f"{where} is not a valid expression: {exc}") from None


def _check_cron(spec: str) -> None:
    body = spec.strip()
    if body.startswith("TZ="):
        zone, _, body = body.partition(" ")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(zone[3:])
        except Exception:
            raise FunctionDefinitionError(
                f"cron {spec!r}: unknown time zone {zone[3:]!r}"
            ) from None
    if len(body.split()) != 5:
        raise FunctionDefinitionError(
            f"cron {spec!r} must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    try:
        from croniter import croniter
    except ImportError:  # client-only install; the server checks it
        return
    if not croniter.is_valid(body):
        raise FunctionDefinitionError(f"cron {spec!r} is not a valid cron expression")
