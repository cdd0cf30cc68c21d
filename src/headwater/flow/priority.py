"""Priority: a run's `priority.run` factor, in seconds, moves it in the queue.

Positive: its items sort as if queued that much earlier (ahead of runs queued up to that long
before it). Negative: its start is delayed by that much (Inngest's documented behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Inngest clamps the factor to ±12 h (PROTOCOL §5).
MAX_PRIORITY_S: Final = 43_200


@dataclass(frozen=True, slots=True)
class PriorityShift:
    #: How much earlier the items sort (≥ 0).
    ahead_ms: int
    #: How much later the run starts (≥ 0).
    delay_ms: int


def priority_shift(factor: object) -> PriorityShift:
    """The shift of a factor as the expression returned it: a number (clamped), anything else 0."""
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        return PriorityShift(0, 0)
    seconds = max(-MAX_PRIORITY_S, min(MAX_PRIORITY_S, int(factor)))
    if seconds >= 0:
        return PriorityShift(seconds * 1000, 0)
    return PriorityShift(0, -seconds * 1000)
