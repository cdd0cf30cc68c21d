"""Rate limit: at most `limit` runs per any `period` for a key; the excess is dropped.

Exact over a sliding window: the state is the times of the runs admitted within the last
`period` (at most `limit` of them), so no window of length `period` ever holds more than `limit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    #: The admitted times to store: those still inside the window, plus `now` if allowed.
    window: tuple[Millis, ...]


def rate_limit(
    admitted: Sequence[Millis], now: Millis, limit: int, period_ms: int
) -> RateLimitDecision:
    if limit <= 0 or period_ms <= 0:
        raise ValueError("a rate limit needs a positive limit and period")
    recent = tuple(at for at in admitted if at > now - period_ms)
    if len(recent) >= limit:
        return RateLimitDecision(False, recent)
    return RateLimitDecision(True, (*recent, now))
