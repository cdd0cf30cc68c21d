"""Flow-control options of a function: concurrency, throttle, rate limit, debounce, batching,
priority, singleton (and the idempotency expression, a plain string on the definition).

Each option validates itself when constructed, so a bad setting fails where the function is
defined, and converts to and from the JSON of Inngest's FunctionConfig (PROTOCOL §3.2), which is
how official SDK apps declare them and how `serve()` registers ours. Durations are seconds or
timedeltas here, Inngest duration strings on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, TypeAlias

from headwater.errors import FunctionDefinitionError
from headwater.protocol.durations import format_duration, parse_duration_ms
from headwater.sdk.functions import check_expression, seconds_of
from headwater.types import JSON, JSONObject

Duration: TypeAlias = timedelta | float
ConcurrencyScope: TypeAlias = Literal["fn", "env", "account"]
SingletonModeName: TypeAlias = Literal["skip", "cancel"]

MAX_CONCURRENCY_LIMITS: Final = 2
_SECOND_MS: Final = 1_000
_DAY_MS: Final = 86_400_000
#: Inngest's ranges (PROTOCOL §3.2 and its docs): rate-limit period up to 24 h, debounce 1 s-7 d.
MAX_RATE_LIMIT_PERIOD_MS: Final = _DAY_MS
MIN_DEBOUNCE_MS: Final = _SECOND_MS
MAX_DEBOUNCE_MS: Final = 7 * _DAY_MS
MAX_THROTTLE_PERIOD_MS: Final = 7 * _DAY_MS


def _ms(value: Duration) -> int:
    return round(seconds_of(value) * 1000)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FunctionDefinitionError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


def _key(value: str | None, what: str) -> None:
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise FunctionDefinitionError(f"{what} must be an expression, got {value!r}")
        check_expression(value, what)


def _period(value: Duration, what: str, low_ms: int, high_ms: int) -> None:
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise FunctionDefinitionError(f"{what} must be seconds or a timedelta, got {value!r}")
    if not low_ms <= _ms(value) <= high_ms:
        raise FunctionDefinitionError(
            f"{what} must be from {format_duration(low_ms / 1000)} to"
            f" {format_duration(high_ms / 1000)}, got {format_duration(max(0.0, seconds_of(value)))}"
        )


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most `limit` runs executing steps at once (sleeping or waiting runs do not count), per
    value of `key` (an expression over `event`), among this function's runs (scope "fn") or among
    all runs on the server using the same key (scopes "env" and "account")."""

    limit: int
    key: str | None = None
    scope: ConcurrencyScope = "fn"

    def __post_init__(self) -> None:
        _positive_int(self.limit, "concurrency limit")
        if self.scope not in ("fn", "env", "account"):
            raise FunctionDefinitionError(
                f"concurrency scope must be 'fn', 'env' or 'account', got {self.scope!r}"
            )
        _key(self.key, "the concurrency key")

    def to_wire(self) -> JSONObject:
        wire: JSONObject = {"limit": self.limit}
        if self.key is not None:
            wire["key"] = self.key
        if self.scope != "fn":
            wire["scope"] = self.scope
        return wire


@dataclass(frozen=True, slots=True)
class Throttle:
    """Runs start at most `limit` per `period` (per `key`), `burst` more at once; the excess waits
    (it is delayed, never dropped)."""

    limit: int
    period: Duration
    burst: int = 0
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "throttle limit")
        _period(self.period, "throttle period", _SECOND_MS, MAX_THROTTLE_PERIOD_MS)
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 0:
            raise FunctionDefinitionError(f"throttle burst must be 0 or more, got {self.burst!r}")
        _key(self.key, "the throttle key")

    @property
    def period_ms(self) -> int:
        return _ms(self.period)

    def to_wire(self) -> JSONObject:
        wire: JSONObject = {"limit": self.limit, "period": format_duration(self.period)}
        if self.burst:
            wire["burst"] = self.burst
        if self.key is not None:
            wire["key"] = self.key
        return wire


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` runs per `period` (≤ 24 h, per `key`); events beyond it start no run
    (the run is recorded as Skipped)."""

    limit: int
    period: Duration
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "rate limit")
        _period(self.period, "rate limit period", _SECOND_MS, MAX_RATE_LIMIT_PERIOD_MS)
        _key(self.key, "the rate limit key")

    @property
    def period_ms(self) -> int:
        return _ms(self.period)

    def to_wire(self) -> JSONObject:
        wire: JSONObject = {"limit": self.limit, "period": format_duration(self.period)}
        if self.key is not None:
            wire["key"] = self.key
        return wire


@dataclass(frozen=True, slots=True)
class Debounce:
    """Start one run, with the last event, once no event (per `key`) came for `period`; at the
    latest `timeout` after the first."""

    period: Duration
    key: str | None = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        _period(self.period, "debounce period", MIN_DEBOUNCE_MS, MAX_DEBOUNCE_MS)
        if self.timeout is not None:
            _period(self.timeout, "debounce timeout", MIN_DEBOUNCE_MS, MAX_DEBOUNCE_MS)
        _key(self.key, "the debounce key")

    @property
    def period_ms(self) -> int:
        return _ms(self.period)

    @property
    def timeout_ms(self) -> int | None:
        return None if self.timeout is None else _ms(self.timeout)

    def to_wire(self) -> JSONObject:
        wire: JSONObject = {"period": format_duration(self.period)}
        if self.key is not None:
            wire["key"] = self.key
        if self.timeout is not None:
            wire["timeout"] = format_duration(self.timeout)
        return wire


@dataclass(frozen=True, slots=True)
class Batch:
    """One run receives up to `max_size` events (per `key`) as `ctx.events`, started when the
    batch is full or `timeout` after its first event. Events for which `if_` is false are not
    batched: each starts a run of its own at once."""

    max_size: int
    timeout: Duration
    key: str | None = None
    if_: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.max_size, "batch max_size")
        _period(self.timeout, "batch timeout", _SECOND_MS, MAX_DEBOUNCE_MS)
        _key(self.key, "the batch key")
        _key(self.if_, "the batch `if`")

    @property
    def timeout_ms(self) -> int:
        return _ms(self.timeout)

    def to_wire(self) -> JSONObject:
        wire: JSONObject = {"maxSize": self.max_size, "timeout": format_duration(self.timeout)}
        if self.key is not None:
            wire["key"] = self.key
        if self.if_ is not None:
            wire["if"] = self.if_
        return wire


@dataclass(frozen=True, slots=True)
class Priority:
    """`run`: an expression over `event` giving seconds: positive starts the run ahead of runs
    queued up to that long before it; negative delays it. Clamped to ±12 h."""

    run: str

    def __post_init__(self) -> None:
        _key(self.run, "priority.run")

    def to_wire(self) -> JSONObject:
        return {"run": self.run}


@dataclass(frozen=True, slots=True)
class Singleton:
    """One active run per `key` at a time: a new run is skipped (`mode="skip"`) or replaces the
    active one, which is cancelled (`mode="cancel"`)."""

    mode: SingletonModeName = "skip"
    key: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("skip", "cancel"):
            raise FunctionDefinitionError(
                f"singleton mode must be 'skip' or 'cancel', got {self.mode!r}"
            )
        _key(self.key, "the singleton key")

    def to_wire(self) -> JSONObject:
        wire: JSONObject = {"mode": self.mode}
        if self.key is not None:
            wire["key"] = self.key
        return wire


@dataclass(frozen=True, slots=True)
class FlowOptions:
    """All flow-control options of one function."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: Priority | None = None
    singleton: Singleton | None = None
    idempotency: str | None = None

    def __post_init__(self) -> None:
        if len(self.concurrency) > MAX_CONCURRENCY_LIMITS:
            raise FunctionDefinitionError(
                f"a function takes at most {MAX_CONCURRENCY_LIMITS} concurrency limits,"
                f" got {len(self.concurrency)}"
            )
        _key(self.idempotency, "the idempotency expression")
        if self.batch is not None:
            # Inngest's rule (PROTOCOL §3.2): a batch run has many events, which these options
            # would each have to pick one of.
            clashes = [
                name
                for name, value in (
                    ("debounce", self.debounce),
                    ("singleton", self.singleton),
                    ("priority", self.priority),
                )
                if value is not None
            ]
            if clashes:
                raise FunctionDefinitionError(
                    f"batching cannot be combined with {', '.join(clashes)}"
                )

    def to_wire(self) -> JSONObject:
        """The FunctionConfig fields of these options (only those set)."""
        wire: JSONObject = {}
        if self.concurrency:
            wire["concurrency"] = [limit.to_wire() for limit in self.concurrency]
        for name, option in (
            ("throttle", self.throttle),
            ("rateLimit", self.rate_limit),
            ("debounce", self.debounce),
            ("batchEvents", self.batch),
            ("priority", self.priority),
            ("singleton", self.singleton),
        ):
            if option is not None:
                wire[name] = option.to_wire()
        if self.idempotency is not None:
            wire["idempotency"] = self.idempotency
        return wire


NO_OPTIONS: Final = FlowOptions()


def flow_options_from_wire(config: JSONObject) -> FlowOptions:
    """The options of a FunctionConfig as either official SDK sends it (camelCase, or the Python
    SDK's snake_case); FunctionDefinitionError naming the field when one is invalid."""
    return FlowOptions(
        concurrency=_concurrency_from_wire(_field(config, "concurrency")),
        throttle=_object(config, "throttle", _throttle),
        rate_limit=_object(config, "rateLimit", _rate_limit),
        debounce=_object(config, "debounce", _debounce),
        batch=_object(config, "batchEvents", _batch),
        priority=_object(config, "priority", _priority),
        singleton=_object(config, "singleton", _singleton),
        idempotency=_optional_str(_field(config, "idempotency"), "idempotency"),
    )


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _field(config: JSONObject, name: str) -> JSON:
    value = config.get(name)
    return config.get(_snake(name)) if value is None else value


def _object(config: JSONObject, name: str, parse: Any) -> Any:
    value = _field(config, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FunctionDefinitionError(f"{name} must be an object, got {type(value).__name__}")
    try:
        return parse(value)
    except FunctionDefinitionError as exc:
        raise FunctionDefinitionError(f"{name}: {exc}") from None


def _optional_str(value: JSON, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise FunctionDefinitionError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _seconds(value: JSON, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise FunctionDefinitionError(f"{what} is required")
    if isinstance(value, int | float):  # some SDK versions send a number of seconds
        return float(value)
    try:
        return parse_duration_ms(str(value)) / 1000
    except ValueError as exc:
        raise FunctionDefinitionError(f"{what}: {exc}") from None


def _concurrency_from_wire(value: JSON) -> tuple[Concurrency, ...]:
    if value is None:
        return ()
    if isinstance(value, bool):
        raise FunctionDefinitionError("concurrency must be a number, an array or an object")
    if isinstance(value, int):
        return () if value == 0 else (Concurrency(value),)
    if isinstance(value, dict):
        # One limit as the TypeScript SDK sends `concurrency: {limit, key}`; otherwise
        # {fn: [...], step: [...]}, of which the function-level limits apply.
        value = [value] if "limit" in value else value.get("fn") or []
    if not isinstance(value, list):
        raise FunctionDefinitionError("concurrency must be a number, an array or an object")
    limits: list[Concurrency] = []
    for entry in value:
        if isinstance(entry, int) and not isinstance(entry, bool):
            limits.append(Concurrency(entry))
            continue
        if not isinstance(entry, dict):
            raise FunctionDefinitionError(f"concurrency entry {entry!r} must be an object")
        if entry.get("limit") == 0:  # 0 means "no limit" in Inngest's configs
            continue
        scope = entry.get("scope") or "fn"
        limits.append(
            Concurrency(
                limit=entry.get("limit"),  # type: ignore[arg-type]  # validated by Concurrency
                key=_optional_str(entry.get("key"), "concurrency key"),
                scope=scope,  # type: ignore[arg-type]  # validated by Concurrency
            )
        )
    return tuple(limits)


def _throttle(value: JSONObject) -> Throttle:
    return Throttle(
        limit=value.get("limit"),  # type: ignore[arg-type]  # validated by Throttle
        period=_seconds(value.get("period"), "period"),
        burst=value.get("burst") or 0,  # type: ignore[arg-type]
        key=_optional_str(value.get("key"), "key"),
    )


def _rate_limit(value: JSONObject) -> RateLimit:
    return RateLimit(
        limit=value.get("limit"),  # type: ignore[arg-type]  # validated by RateLimit
        period=_seconds(value.get("period"), "period"),
        key=_optional_str(value.get("key"), "key"),
    )


def _debounce(value: JSONObject) -> Debounce:
    timeout = value.get("timeout")
    return Debounce(
        period=_seconds(value.get("period"), "period"),
        key=_optional_str(value.get("key"), "key"),
        timeout=_seconds(timeout, "timeout") if timeout else None,
    )


def _batch(value: JSONObject) -> Batch:
    return Batch(
        max_size=_field(value, "maxSize"),  # type: ignore[arg-type]  # validated by Batch
        timeout=_seconds(value.get("timeout"), "timeout"),
        key=_optional_str(value.get("key"), "key"),
        if_=_optional_str(value.get("if"), "if"),
    )


def _priority(value: JSONObject) -> Priority | None:
    run = _optional_str(value.get("run"), "run")
    return None if run is None else Priority(run)


def _singleton(value: JSONObject) -> Singleton:
    return Singleton(
        mode=value.get("mode") or "skip",  # type: ignore[arg-type]  # validated by Singleton
        key=_optional_str(value.get("key"), "key"),
    )
