"""Debounce and event batching: events of one key gather into one pending run.

The pending run is an ordinary Queued run whose start item is due when the group closes; these
decisions say, for each new event, whether it joins the open group and when the run becomes due.
"""

from __future__ import annotations

from dataclasses import dataclass

from headwater.flow.rules import GroupKind, GroupRule
from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class OpenGroup:
    """A group that still takes events: its run has not been claimed yet."""

    run_id: str
    first_at: Millis
    size: int


@dataclass(frozen=True, slots=True)
class GroupDecision:
    #: Join the open group (else start a new group with a new run).
    join: bool
    #: When the (joined or new) run's start item is due.
    due_at: Millis
    #: The group takes no more events (a full batch): later events start a new group.
    close: bool


def on_event(rule: GroupRule, group: OpenGroup | None, now: Millis) -> GroupDecision:
    if rule.kind is GroupKind.DEBOUNCE:
        return _debounce(rule, group, now)
    return _batch(rule, group, now)


def _debounce(rule: GroupRule, group: OpenGroup | None, now: Millis) -> GroupDecision:
    first_at = now if group is None else group.first_at
    due_at = now + rule.period_ms
    if rule.timeout_ms is not None:
        due_at = min(due_at, first_at + rule.timeout_ms)
    return GroupDecision(join=group is not None, due_at=max(due_at, now), close=False)


def _batch(rule: GroupRule, group: OpenGroup | None, now: Millis) -> GroupDecision:
    size = 1 if group is None else group.size + 1
    full = size >= rule.max_size
    if full:
        return GroupDecision(join=group is not None, due_at=now, close=True)
    first_at = now if group is None else group.first_at
    timeout = rule.timeout_ms if rule.timeout_ms is not None else 0
    return GroupDecision(join=group is not None, due_at=first_at + timeout, close=False)
