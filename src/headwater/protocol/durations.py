"""Inngest's duration strings (`300ms`, `1m`, `2h45m`, `1d`, `1w`), as its SDKs and opts use them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_UNIT_MS: Final = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1.0,
    "s": 1_000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
    "w": 604_800_000.0,
}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a duration string; raises ValueError naming the text when it is not one."""
    body = text.strip()
    if not body:
        raise ValueError("an empty duration")
    position = 0
    total = 0.0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        position = match.end()
    if position != len(body):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 2h45m, 1d or 1w")
    return round(total)


def format_duration(delay: timedelta | float) -> str:
    """A duration string for a timedelta or a number of seconds, exact to the millisecond."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return f"{round(seconds * 1000)}ms"
