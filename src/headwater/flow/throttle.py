"""Throttle: the generic cell rate algorithm (GCRA), as Inngest's queue uses it.

A `limit` per `period` gives an emission interval T = period / limit: one start per T. `limit +
burst` starts may happen at once; after that, one every T. The state per key is one number, the
theoretical arrival time (TAT) of the next start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    allowed: bool
    #: The TAT to store (unchanged when not allowed).
    tat: Millis
    #: When a start not allowed now would be (the earliest retry); `now` when allowed.
    retry_at: Millis


def emission_interval_ms(limit: int, period_ms: int) -> float:
    return period_ms / limit


def throttle(
    tat: Millis | None, now: Millis, limit: int, period_ms: int, burst: int = 0
) -> ThrottleDecision:
    """May a run start at `now`, given the key's stored TAT (None: never started)?"""
    if limit <= 0 or period_ms <= 0:
        raise ValueError("a throttle needs a positive limit and period")
    interval = emission_interval_ms(limit, period_ms)
    # Up to limit + burst starts at once: the TAT may run that many intervals ahead of now.
    tolerance = interval * (limit + burst - 1)
    current = now if tat is None else max(tat, now)
    earliest = current - tolerance
    if now < earliest:
        return ThrottleDecision(False, current, math.ceil(earliest))
    # Rounded up: stored whole milliseconds never let starts through faster than the rate.
    return ThrottleDecision(True, math.ceil(current + interval), now)
