"""Retention: forget what is older than the configured period, a batch at a time, in one program
for both dialects (the machinery of flow_programs.py).

What goes: runs that ended before the cutoff (their steps, event links, waits and replay links
with them, by the foreign keys' cascades); then events received before the cutoff that no
remaining run lists (a run that slept for a month keeps its event); and idempotency keys expired
before it. Active runs, and everything they need, are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from headwater.store.flow_programs import Program, Sql, marks
from headwater.store.run_rules import ACTIVE_IN
from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class Deleted:
    runs: int
    events: int
    keys: int

    @property
    def total(self) -> int:
        return self.runs + self.events + self.keys


def delete_expired(cutoff: Millis, limit: int) -> Program[Deleted]:
    """Delete up to `limit` of each: ended runs, unlisted events, expired keys (oldest first)."""
    runs = yield Sql(
        "SELECT run_id FROM runs WHERE ended_at < ?"
        f" AND status NOT IN {ACTIVE_IN} ORDER BY ended_at LIMIT ?",
        (cutoff, limit),
    )
    run_ids = [row[0] for row in runs]
    if run_ids:
        yield Sql(f"DELETE FROM runs WHERE run_id IN ({marks(len(run_ids))})", run_ids)
    events = yield Sql(
        "SELECT internal_id FROM events AS e WHERE received_at < ? AND NOT EXISTS"
        " (SELECT 1 FROM run_events AS l WHERE l.event_id = e.internal_id)"
        " ORDER BY received_at LIMIT ?",
        (cutoff, limit),
    )
    event_ids = [row[0] for row in events]
    if event_ids:
        yield Sql(f"DELETE FROM events WHERE internal_id IN ({marks(len(event_ids))})", event_ids)
    keys = yield Sql(
        "SELECT function_id, key FROM idempotency_keys WHERE expires_at < ?"
        " ORDER BY expires_at LIMIT ?",
        (cutoff, limit),
    )
    if keys:
        yield Sql(
            "DELETE FROM idempotency_keys WHERE function_id = ? AND key = ?",
            [(row[0], row[1]) for row in keys],
            many=True,
        )
    return Deleted(len(run_ids), len(event_ids), len(keys))
