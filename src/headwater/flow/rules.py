"""What flow control asks of one run, worked out when the run is planned (keys already evaluated).

These records travel with a `NewRun` into the store, which enforces them in the transactions that
create runs and claim queue items, using the pure decisions of the sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ConcurrencySlot:
    """The run may execute only while fewer than `limit` items holding `key` are executing.

    `key` already names its scope: `f:<function>:<value>` (scope fn) or `a:<value>` (scopes env and
    account, shared by every function using the same key value on this server)."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """Starts of runs holding `key`: `limit` per `period_ms`, `burst` more at once (GCRA)."""

    key: str
    limit: int
    period_ms: int
    burst: int = 0


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """At most `limit` runs per `period_ms` for `key`; the excess is dropped (Skipped)."""

    key: str
    limit: int
    period_ms: int


class SingletonMode(StrEnum):
    #: A new run is Skipped while a run with the same key is active.
    SKIP = "skip"
    #: The active run is cancelled and the new one takes its place.
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class SingletonRule:
    key: str
    mode: SingletonMode = SingletonMode.SKIP


class GroupKind(StrEnum):
    DEBOUNCE = "debounce"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class GroupRule:
    """Events of one `key` gather into one pending run before it starts.

    Debounce: the run starts with the last event once none came for `period_ms`, at the latest
    `timeout_ms` after the first (if set). Batch: the run starts with all its events when it holds
    `max_size` of them or `timeout_ms` after the first."""

    kind: GroupKind
    key: str
    period_ms: int = 0
    timeout_ms: int | None = None
    max_size: int = 1


@dataclass(frozen=True, slots=True)
class RunFlow:
    """Everything flow control enforces for one run. The empty default enforces nothing."""

    concurrency: tuple[ConcurrencySlot, ...] = ()
    throttle: ThrottleRule | None = None
    rate_limit: RateLimitRule | None = None
    singleton: SingletonRule | None = None
    group: GroupRule | None = None
    #: How far ahead of runs queued earlier this run's items sort (priority, ≥ 0; a negative
    #: priority delays the run's start instead).
    priority_ms: int = 0
    #: Cancel the run if it has not started by then (timeouts.start), even while flow control
    #: holds it back.
    start_deadline: int | None = None

    @property
    def needs_creation_state(self) -> bool:
        """Whether creating the run reads and writes flow state (not only queue columns)."""
        return self.rate_limit is not None or self.singleton is not None or self.group is not None


NO_FLOW = RunFlow()
