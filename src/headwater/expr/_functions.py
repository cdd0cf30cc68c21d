"""Inngest's custom CEL functions (GO:`pkg/expressions/exprenv/overloads.go`).

Each function is total, as Inngest's are: a bad argument gives the same fallback value
Inngest gives (an empty string, an empty map) or null where Inngest returns nil, and never
raises. That keeps the `cel` library from logging a warning for every user mistake; a null
then fails the comparison it is used in, as in Inngest.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

_DURATION: Final = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h|d|w))+")
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d|w)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # micro sign
    "μs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
# dateutil.ParseInt: before 2000 is not a date; then seconds, milliseconds, nanoseconds.
_YEAR_2000: Final = 946_684_800
_MAX_SECONDS: Final = 9_999_999_999
_MAX_MILLISECONDS: Final = 9_999_999_999_999


def parse_duration(text: str) -> timedelta | None:
    """A Go-style duration with days and weeks (str2duration): `1h`, `30m`, `1d`, `1h30m`."""
    sign = 1.0
    if text[:1] in ("-", "+"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return timedelta(0)
    if not _DURATION.fullmatch(text):
        return None
    seconds = sum(
        float(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text)
    )
    try:
        return timedelta(seconds=sign * seconds)
    except OverflowError:
        return None


def parse_date(value: object) -> datetime | None:
    """`date()`: an RFC 3339 / ISO 8601 or RFC 1123 string, or a Unix time in s, ms or ns."""
    if isinstance(value, str):
        return _parse_date_string(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _parse_date_int(value)
    return None


def _parse_date_string(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_date_int(number: int) -> datetime | None:
    try:
        if number < _YEAR_2000:
            return None
        if number < _MAX_SECONDS:
            return datetime.fromtimestamp(number, UTC)
        if number < _MAX_MILLISECONDS:
            return datetime.fromtimestamp(number / 1_000, UTC)
        return datetime.fromtimestamp(number / 1_000_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def lowercase(value: object) -> str:
    return value.lower() if isinstance(value, str) else ""


def uppercase(value: object) -> str:
    return value.upper() if isinstance(value, str) else ""


def b64decode(value: object) -> str:
    if not isinstance(value, str):
        return ""
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return decoded.decode("utf-8", errors="replace")


def json_parse(value: object) -> dict[str, object]:
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def date(value: object) -> datetime | None:
    return parse_date(value)


STATIC_FUNCTIONS: Final[dict[str, Callable[..., object]]] = {
    "lowercase": lowercase,
    "uppercase": uppercase,
    "b64decode": b64decode,
    "json_parse": json_parse,
    "date": date,
}
CLOCK_FUNCTIONS: Final = frozenset({"now", "now_plus", "now_minus"})


def clock_functions(now: datetime) -> dict[str, Callable[..., object]]:
    """`now()`, `now_plus()` and `now_minus()` reading the given instant, not the clock."""

    def now_() -> datetime:
        return now

    def now_plus(value: object) -> datetime | None:
        delta = parse_duration(value) if isinstance(value, str) else None
        return _shift(now, delta)

    def now_minus(value: object) -> datetime | None:
        delta = parse_duration(value) if isinstance(value, str) else None
        return _shift(now, -delta if delta is not None else None)

    return {"now": now_, "now_plus": now_plus, "now_minus": now_minus}


def _shift(instant: datetime, delta: timedelta | None) -> datetime | None:
    if delta is None:
        return None
    try:
        return instant + delta
    except OverflowError:
        return None
