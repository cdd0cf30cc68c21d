"""The event envelope `{name, data, user, id, ts, v}` and its validation.

The same code validates on the client (before any request) and on the server, so a bad event fails
with the same message in both places: `event <index>: <field> <problem>`, the index counted from 0
in the order the events were given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from headwater.errors import EventValidationError
from headwater.types import JSONObject, Millis

#: Names with this prefix are Inngest's (and our) system events; users may not send them.
RESERVED_PREFIX: Final = "inngest/"
#: Inngest reserves this key of `data` for its own metadata and drops it on ingest.
RESERVED_DATA_KEY: Final = "_inngest"
#: PostgreSQL cannot store NUL in text or JSONB; it is refused everywhere so both backends agree.
NUL_PROBLEM: Final = "must not contain the NUL character (\\u0000)"
MIN_TS: Final[Millis] = 315_532_800_000  # 1980-01-01T00:00:00Z
MAX_TS: Final[Millis] = 4_102_444_800_000  # 2100-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Limits of one ingest request. The defaults are Inngest's (PROTOCOL §1.10)."""

    max_events: int = 5_000
    max_event_bytes: int = 3 * 1024 * 1024
    max_request_bytes: int = 10 * 1024 * 1024
    max_name_length: int = 256


DEFAULT_LIMITS: Final = EventLimits()


@dataclass(slots=True)
class Event:
    """One event as an application sends it. Only `name` is required."""

    name: str
    data: JSONObject = field(default_factory=dict)
    user: JSONObject = field(default_factory=dict)
    id: str | None = None
    ts: Millis | None = None
    v: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name, "data": self.data}
        if self.user:
            wire["user"] = self.user
        if self.id:
            wire["id"] = self.id
        if self.ts:
            wire["ts"] = self.ts
        if self.v is not None:
            wire["v"] = self.v
        return wire


@dataclass(slots=True)  # not frozen: made once per ingested event (see store.base.EventRecord)
class NormalizedEvent:
    """A valid event with every default applied; `id` is None when the sender gave none. Treated
    as immutable."""

    name: str
    data: JSONObject
    user: JSONObject
    id: str | None
    ts: Millis
    v: str | None
    meta: JSONObject | None


def event_map(
    name: str, data: JSONObject, user: JSONObject | None, id: str, ts: Millis, v: str | None
) -> JSONObject:
    """The event as functions and expressions see it: `{name, data, user, id, ts, v?}`. Without a
    `user` (None) the key is left out: for what must not carry one (system events, a run's
    announcement of its trigger)."""
    wire: JSONObject = {"name": name, "data": data}
    if user is not None:
        wire["user"] = user
    wire["id"] = id
    wire["ts"] = ts
    if v is not None:
        wire["v"] = v
    return wire


def normalize_event(
    raw: object, index: int, received_at: Millis, limits: EventLimits = DEFAULT_LIMITS
) -> NormalizedEvent:
    """Validate one decoded event and apply Inngest's defaults (PROTOCOL §1.4).

    Raises EventValidationError naming `index` and the field at fault.
    """
    if type(raw) is not dict:  # decoded JSON, the common case, skips the (slower) ABC check
        if isinstance(raw, Event):
            raw = raw.to_wire()
        if not isinstance(raw, Mapping):
            raise EventValidationError(index, "", f"must be a JSON object, not {_json_type(raw)}")

    name = raw.get("name")
    if name is None:
        raise EventValidationError(index, "name", "is required")
    if not isinstance(name, str):
        raise EventValidationError(index, "name", f"must be a string, not {_json_type(name)}")
    if not name or name.isspace():  # `not name.strip()`, without copying the name
        raise EventValidationError(index, "name", "must not be empty")
    if "\x00" in name:
        raise EventValidationError(index, "name", NUL_PROBLEM)
    if len(name) > limits.max_name_length:
        raise EventValidationError(
            index, "name", f"is {len(name)} characters long; the limit is {limits.max_name_length}"
        )
    if name[: len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX:
        raise EventValidationError(
            index, "name", f"must not start with {RESERVED_PREFIX!r} (reserved for system events)"
        )

    data = raw.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise EventValidationError(index, "data", f"must be an object, not {_json_type(data)}")
    elif RESERVED_DATA_KEY in data:
        data = {k: v for k, v in data.items() if k != RESERVED_DATA_KEY}

    user = raw.get("user")
    if user is None:
        user = {}
    elif not isinstance(user, dict):
        raise EventValidationError(index, "user", f"must be an object, not {_json_type(user)}")

    event_id = raw.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise EventValidationError(index, "id", f"must be a string, not {_json_type(event_id)}")
    if event_id and "\x00" in event_id:
        raise EventValidationError(index, "id", NUL_PROBLEM)

    ts = raw.get("ts")
    if ts is None or ts == 0:
        ts = received_at
    elif isinstance(ts, bool) or not isinstance(ts, int):
        raise EventValidationError(index, "ts", "must be an integer (milliseconds)")
    elif not MIN_TS <= ts < MAX_TS:
        raise EventValidationError(
            index, "ts", f"must be between 1980 and 2100 in epoch milliseconds, got {ts}"
        )

    version = raw.get("v")
    if version is not None and not isinstance(version, str):
        raise EventValidationError(index, "v", f"must be a string, not {_json_type(version)}")
    if version and "\x00" in version:
        raise EventValidationError(index, "v", NUL_PROBLEM)

    meta = raw.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise EventValidationError(index, "meta", f"must be an object, not {_json_type(meta)}")

    return NormalizedEvent(name, data, user, event_id or None, ts, version, meta)


def normalize_events(
    raws: Iterable[object], received_at: Millis, limits: EventLimits = DEFAULT_LIMITS
) -> list[NormalizedEvent]:
    """Validate a whole send; the first bad event raises and nothing of the send is kept."""
    events: list[NormalizedEvent] = []
    for index, raw in enumerate(raws):
        events.append(normalize_event(raw, index, received_at, limits))
    return events


def check_event_size(index: int, size: int, limits: EventLimits) -> None:
    """Reject an event whose JSON encoding exceeds the per-event limit."""
    if size > limits.max_event_bytes:
        raise EventValidationError(
            index, "", f"is {size} bytes; the limit is {limits.max_event_bytes} bytes per event"
        )


def encoded_has_nul(encoded: bytes, value: object) -> bool:
    """Whether a JSON value holds a NUL character in any string or key; `encoded` is its JSON
    encoding, checked first so the common case costs one byte search."""
    if b"\\u0000" not in encoded:
        return False
    return _has_nul(value)


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
