"""Failed dashboard logins, limited per client address: guessing a password costs time.

Each failure spends one start of a throttle (flow/throttle.py, the same GCRA as functions use):
`ATTEMPTS` at once, then one more per `PERIOD_MS / ATTEMPTS`. A success costs nothing. State is
kept in memory per process, one number per address, dropped once it is in the past.
"""

from __future__ import annotations

from typing import Final

from headwater.flow.throttle import throttle
from headwater.types import Millis

ATTEMPTS: Final = 5
PERIOD_MS: Final = 60_000
#: Addresses remembered at most; beyond it the oldest are forgotten (a bound on memory).
MAX_ADDRESSES: Final = 10_000


class LoginAttempts:
    def __init__(self) -> None:
        self._tats: dict[str, Millis] = {}

    def wait_ms(self, address: str, now: Millis) -> int:
        """How long `address` must wait before its next attempt (0: it may try now)."""
        decision = throttle(self._tats.get(address), now, ATTEMPTS, PERIOD_MS)
        return 0 if decision.allowed else decision.retry_at - now

    def failed(self, address: str, now: Millis) -> None:
        decision = throttle(self._tats.get(address), now, ATTEMPTS, PERIOD_MS)
        if decision.allowed:
            self._tats[address] = decision.tat
        self._forget_old(now)

    def _forget_old(self, now: Millis) -> None:
        if len(self._tats) <= MAX_ADDRESSES:
            return
        self._tats = {a: tat for a, tat in self._tats.items() if tat > now}
        while len(self._tats) > MAX_ADDRESSES:
            self._tats.pop(next(iter(self._tats)))
