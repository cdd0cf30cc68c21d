"""A function's flow-control options applied to one triggering event: the run's `RunFlow`.

Key expressions see `event` only (PROTOCOL §5), and are evaluated here, once, when the run is
planned; the store then enforces the resulting keys and limits without evaluating anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from headwater.expr import compile_expression
from headwater.flow.priority import priority_shift
from headwater.flow.rules import (
    NO_FLOW,
    ConcurrencySlot,
    GroupKind,
    GroupRule,
    RateLimitRule,
    RunFlow,
    SingletonMode,
    SingletonRule,
    ThrottleRule,
)
from headwater.sdk.functions import FunctionDefinition
from headwater.types import JSONObject, Millis

#: Key values longer than this are stored as their SHA-256 (keys are compared, never shown).
_MAX_KEY_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class PlannedFlow:
    flow: RunFlow
    #: The idempotency key from the function's `idempotency` expression (None: not set, or null).
    idempotency_key: str | None
    #: How much later the run starts than planned (a negative priority).
    delay_ms: int


NO_PLANNED_FLOW: Final = PlannedFlow(NO_FLOW, None, 0)


def _key_value(expression: str | None, variables: JSONObject) -> str:
    """The key's value for this event: "" when there is no expression or it gives null (all such
    runs share one key)."""
    if expression is None:
        return ""
    return _bounded(compile_expression(expression).key(variables) or "")


def _bounded(value: str) -> str:
    if len(value) > _MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


_SCOPE_PREFIXES: Final = {"env": "e:", "account": "a:"}


def plan_flow(definition: FunctionDefinition, event: JSONObject, now: Millis) -> PlannedFlow:
    """The flow control of a run of `definition` triggered by `event` (`{name, data, ...}`)."""
    options = definition.flow
    timeouts = definition.timeouts
    start_ms = timeouts.start_ms if timeouts is not None else None
    # A start timeout counts from when the run is due: an event dated ahead is due at its `ts`.
    ts = event.get("ts")
    due = max(now, ts) if isinstance(ts, int) and not isinstance(ts, bool) else now
    if options is None:
        if start_ms is None:
            return NO_PLANNED_FLOW
        return PlannedFlow(RunFlow(start_deadline=due + start_ms), None, 0)
    variables: JSONObject = {"event": event}
    slug = definition.slug
    slots = tuple(
        ConcurrencySlot(
            # Scopes env and account share the key across functions (one environment per server),
            # each in its own key space: an env limit and an account limit on the same value are
            # two limits, as in Inngest (which keys them by the scope's id).
            _SCOPE_PREFIXES.get(rule.scope, f"f:{slug}:") + _key_value(rule.key, variables),
            rule.limit,
        )
        for rule in options.concurrency
    )
    throttle = None
    if options.throttle is not None:
        rule = options.throttle
        throttle = ThrottleRule(
            f"t:{slug}:{_key_value(rule.key, variables)}", rule.limit, rule.period_ms, rule.burst
        )
    rate_limit = None
    if options.rate_limit is not None:
        limit = options.rate_limit
        rate_limit = RateLimitRule(
            f"r:{slug}:{_key_value(limit.key, variables)}", limit.limit, limit.period_ms
        )
    singleton = None
    if options.singleton is not None:
        singleton = SingletonRule(
            _key_value(options.singleton.key, variables), SingletonMode(options.singleton.mode)
        )
    group = None
    if options.debounce is not None:
        debounce = options.debounce
        group = GroupRule(
            GroupKind.DEBOUNCE,
            _key_value(debounce.key, variables),
            period_ms=debounce.period_ms,
            timeout_ms=debounce.timeout_ms,
        )
    elif options.batch is not None:
        batch = options.batch
        # An event the batch `if` rejects is not batched: it starts a run of its own.
        if batch.if_ is None or compile_expression(batch.if_).matches(variables):
            group = GroupRule(
                GroupKind.BATCH,
                _key_value(batch.key, variables),
                timeout_ms=batch.timeout_ms,
                max_size=batch.max_size,
            )
    shift = priority_shift(None)
    if options.priority is not None:
        try:
            factor = compile_expression(options.priority.run).evaluate(variables)
        except Exception:  # an expression error gives no priority, as a null would
            factor = None
        shift = priority_shift(factor)
    idempotency_key = None
    if options.idempotency is not None:
        value = compile_expression(options.idempotency).key(variables)
        if value is not None:
            idempotency_key = "expr:" + _bounded(value)
    flow = RunFlow(
        concurrency=slots,
        throttle=throttle,
        rate_limit=rate_limit,
        singleton=singleton,
        group=group,
        priority_ms=shift.ahead_ms,
        start_deadline=None if start_ms is None else due + shift.delay_ms + start_ms,
    )
    return PlannedFlow(flow, idempotency_key, shift.delay_ms)
