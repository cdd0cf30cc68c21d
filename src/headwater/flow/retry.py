"""When to try a failed step or function again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from headwater.types import Millis

#: Inngest clamps Retry-After to [1 s, 24 h] (PROTOCOL §3.1).
MIN_RETRY_AFTER_MS = 1_000
MAX_RETRY_AFTER_MS = 24 * 3_600_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n (0-based, the one that failed) waits about
    base·2^n, at most `cap_ms`, drawn from the upper half so failures spread out."""

    base_ms: int = 1_000
    cap_ms: int = 10 * 60_000

    def next_attempt_at(
        self,
        failed_attempt: int,
        max_attempts: int,
        now: Millis,
        *,
        no_retry: bool = False,
        retry_at: Millis | None = None,
        rand: Callable[[], float] = random.random,
    ) -> Millis | None:
        """The time of the next attempt, or None when the failure is final."""
        if no_retry or failed_attempt + 1 >= max_attempts:
            return None
        if retry_at is not None:
            return now + min(max(retry_at - now, MIN_RETRY_AFTER_MS), MAX_RETRY_AFTER_MS)
        ceiling = min(self.cap_ms, self.base_ms * 2 ** min(failed_attempt, 32))
        return now + int(ceiling / 2 + rand() * ceiling / 2)
