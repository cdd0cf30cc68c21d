"""Which due queue items a claim may take: concurrency limits, then the throttle of run starts.

The store feeds candidates in queue order (priority first, then due time) and the executing items'
keys; this decides, without I/O, which are taken, which must wait for a slot, and which a throttle
pushes to a later time. Candidates of saturated keys are passed over, not waited for, so one busy
key never holds back the items of other keys behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from headwater.flow.rules import ConcurrencySlot, ThrottleRule
from headwater.flow.throttle import throttle
from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class Candidate:
    item_id: str
    run_id: str
    slots: tuple[ConcurrencySlot, ...] = ()
    #: The throttle of the run's start (only on a start item not yet admitted).
    throttle: ThrottleRule | None = None
    #: Past its deadline (its run's start or finish deadline): taken whatever the limits, so
    #: the executor cancels it now.
    overdue: bool = False


@dataclass(slots=True)
class Admission:
    taken: list[Candidate] = field(default_factory=list)
    #: Items a throttle pushes back: item id → its new due time.
    delayed: dict[str, Millis] = field(default_factory=dict)
    #: New throttle states to store: key → TAT.
    throttle_tats: dict[str, Millis] = field(default_factory=dict)
    #: Items held back by a key at its limit: item id → that key (and its limit). The store sets
    #: them aside until the key has a free slot, so later claims do not read them again.
    blocked: dict[str, ConcurrencySlot] = field(default_factory=dict)


def in_flight_counts(executing: Iterable[Sequence[str | None]]) -> Counter[str]:
    """Items executing per concurrency key, from each executing item's keys (None: no key)."""
    counts: Counter[str] = Counter()
    for keys in executing:
        counts.update(key for key in keys if key is not None)
    return counts


def free_slots(counts: Mapping[str, int], key: str, limit: int) -> int:
    """How many more items of `key` may execute now."""
    return max(0, limit - counts.get(key, 0))


def admit(
    candidates: Sequence[Candidate],
    in_flight: Counter[str],
    throttle_tats: Mapping[str, Millis],
    now: Millis,
    want: int,
) -> Admission:
    """Take up to `want` candidates in order. `in_flight` is updated with what is taken."""
    result = Admission()
    tats = dict(throttle_tats)
    for candidate in candidates:
        if len(result.taken) >= want:
            break
        if not candidate.overdue:
            full = [s for s in candidate.slots if in_flight[s.key] >= s.limit]
            if full:
                result.blocked[candidate.item_id] = full[0]
                continue
            rule = candidate.throttle
            if rule is not None:
                decision = throttle(tats.get(rule.key), now, rule.limit, rule.period_ms, rule.burst)
                if not decision.allowed:
                    result.delayed[candidate.item_id] = decision.retry_at
                    continue
                tats[rule.key] = decision.tat
                result.throttle_tats[rule.key] = decision.tat
        for slot in candidate.slots:
            in_flight[slot.key] += 1
        result.taken.append(candidate)
    return result
