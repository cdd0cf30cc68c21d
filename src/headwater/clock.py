"""Layer 0: the one wall clock, in the epoch milliseconds Headwater stores and sends."""

from __future__ import annotations

import time

from headwater.types import Millis


def now_ms() -> Millis:
    return time.time_ns() // 1_000_000
