"""Flow control in the store, written once for both dialects: claiming under concurrency limits and
throttles, and creating runs under rate limits, singletons, debounce and batching.

Each verb here is a *program*: a generator that yields the SQL statements it needs (with `?`
marks) and receives each statement's rows, deciding with the pure functions of flow/ in between.
A dialect runs a program inside one transaction (`run_sqlite` in the writer thread's job;
PostgreSQL in a transaction holding the flow lock, see postgres_runs.py), so both backends take
exactly the same decisions from exactly the same reads, and the SQL is shared as well.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import orjson

from headwater.flow.admission import Candidate, admit, free_slots, in_flight_counts
from headwater.flow.grouping import OpenGroup, on_event
from headwater.flow.rate_limit import rate_limit
from headwater.flow.rules import ConcurrencySlot, GroupKind
from headwater.flow.singleton import SingletonDecision, singleton
from headwater.store.flow_rows import (
    CANDIDATE_COLUMNS,
    CANDIDATE_WINDOW,
    MAX_CANDIDATE_WINDOWS,
    QUEUE_FLOW_COLUMNS,
    RATE_LIMITED_REASON,
    candidate_from_row,
    queue_flow_values,
    singleton_replaced_reason,
    singleton_skipped_reason,
)
from headwater.store.run_rules import (
    ACTIVE_IN,
    DUPLICATE_REASON,
    PlannedRun,
    new_run_record,
)
from headwater.store.runs import NewRun, QueueItem, RunRecord, RunStatus
from headwater.types import Millis

T = TypeVar("T")
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement of a program: `?` marks; `many` runs it once per row of `params`."""

    text: str
    params: Sequence[Any] = ()
    many: bool = False


Program = Generator[Sql, Rows, T]

_QUEUED: Final = RunStatus.QUEUED.value


def marks(count: int) -> str:
    """`count` parameter marks of a program's statement."""
    return ", ".join("?" * count)


# -- claiming ----------------------------------------------------------------------------------


def claim(owner: str, now: Millis, lease_until: Millis, want: int) -> Program[list[QueueItem]]:
    """Lease up to `want` due items, in queue order, that the concurrency limits and throttles
    admit; push throttled starts to their next allowed time; set aside the items of keys at their
    limit (`blocked_on`), and hand back those of keys that have free slots again."""
    executing = yield Sql(
        "SELECT ckey1, ckey2 FROM queue"
        " WHERE lease_until > ? AND (ckey1 IS NOT NULL OR ckey2 IS NOT NULL)",
        (now,),
    )
    counts = in_flight_counts(executing)
    yield from _unblock(counts, now)
    taken: list[Candidate] = []
    delayed: dict[str, Millis] = {}
    blocked: dict[str, ConcurrencySlot] = {}
    tats: dict[str, Millis] = {}
    new_tats: dict[str, Millis] = {}
    after: tuple[int, str] | None = None
    for _ in range(MAX_CANDIDATE_WINDOWS):
        rows = yield _candidates(now, after)
        pairs = [candidate_from_row(row, now) for row in rows]
        if pairs:
            after = (pairs[-1][1], pairs[-1][0].item_id)
        candidates = [candidate for candidate, _ in pairs]
        throttle_keys = sorted({c.throttle.key for c in candidates if c.throttle} - tats.keys())
        if throttle_keys:
            stored = yield Sql(
                f"SELECT key, tat FROM flow_state WHERE key IN ({marks(len(throttle_keys))})",
                throttle_keys,
            )
            tats.update({key: int(tat) for key, tat in stored if tat is not None})
        admission = admit(candidates, counts, tats, now, want - len(taken))
        taken += admission.taken
        delayed.update(admission.delayed)
        blocked.update(admission.blocked)
        tats.update(admission.throttle_tats)
        new_tats.update(admission.throttle_tats)
        if len(taken) >= want or len(rows) < CANDIDATE_WINDOW:
            break
    yield from _block(blocked)
    if not taken and not delayed:
        return []
    yield from _apply_claim(owner, now, lease_until, taken, delayed, new_tats)
    if not taken:
        return []
    # Only what this claim leased: on PostgreSQL a finish or cancellation that does not take the
    # flow lock may have deleted an item since it was read.
    leased = yield Sql(
        "SELECT item_id, run_id, due_at, attempt FROM queue"
        f" WHERE item_id IN ({marks(len(taken))}) AND lease_owner = ? AND lease_until = ?",
        [*(candidate.item_id for candidate in taken), owner, lease_until],
    )
    by_id = {row[0]: row for row in leased}
    return [
        QueueItem(c.item_id, row[1], int(row[2]), int(row[3]), owner, lease_until, c.overdue)
        for c in taken
        if (row := by_id.get(c.item_id)) is not None
    ]


def _unblock(counts: Counter[str], now: Millis) -> Generator[Sql, Rows, None]:
    """Hand back set-aside items: as many of each key's (earliest first) as it has free slots,
    and every one past its deadline (to be cancelled now). A key with none left set aside
    is forgotten."""
    blocked_keys = yield Sql("SELECT key, key_limit FROM blocked_keys ORDER BY key")
    if not blocked_keys:  # nothing is set aside (every set-aside item's key is listed)
        return
    overdue = yield Sql(
        "SELECT item_id FROM queue WHERE blocked_on IS NOT NULL AND deadline <= ?", (now,)
    )
    release = [row[0] for row in overdue]
    forget: list[str] = []
    for key, limit in blocked_keys:
        free = free_slots(counts, key, int(limit))
        if free == 0:
            continue
        rows = yield Sql(
            "SELECT item_id FROM queue WHERE blocked_on = ?"
            " ORDER BY due_at - priority_ms, item_id LIMIT ?",
            (key, free),
        )
        release += [row[0] for row in rows]
        if len(rows) < free:
            forget.append(key)
    if release:
        yield Sql(
            f"UPDATE queue SET blocked_on = NULL WHERE item_id IN ({marks(len(release))})",
            release,
        )
    if forget:
        yield Sql(f"DELETE FROM blocked_keys WHERE key IN ({marks(len(forget))})", forget)


def _block(blocked: dict[str, ConcurrencySlot]) -> Generator[Sql, Rows, None]:
    if not blocked:
        return
    yield Sql(
        "UPDATE queue SET blocked_on = ? WHERE item_id = ?",
        [(slot.key, item_id) for item_id, slot in sorted(blocked.items())],
        many=True,
    )
    limits = {slot.key: slot.limit for slot in blocked.values()}
    yield Sql(
        "INSERT INTO blocked_keys (key, key_limit) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET key_limit = excluded.key_limit",
        sorted(limits.items()),
        many=True,
    )


def _candidates(now: Millis, after: tuple[int, str] | None) -> Sql:
    """A window of claimable items in queue order, after position `after` (set-aside items are
    not read: they wait for a free slot of their key)."""
    text = (
        f"SELECT {CANDIDATE_COLUMNS} FROM queue"
        " WHERE blocked_on IS NULL AND due_at - priority_ms <= ? AND due_at <= ?"
        " AND (lease_until IS NULL OR lease_until <= ?)"
    )
    params: list[object] = [now, now, now]
    if after is not None:
        text += " AND (due_at - priority_ms, item_id) > (?, ?)"
        params += after
    text += " ORDER BY due_at - priority_ms, item_id LIMIT ?"
    params.append(CANDIDATE_WINDOW)
    return Sql(text, params)


def _apply_claim(
    owner: str,
    now: Millis,
    lease_until: Millis,
    taken: Sequence[Candidate],
    delayed: dict[str, Millis],
    tats: dict[str, Millis],
) -> Generator[Sql, Rows, None]:
    if taken:
        # A taken start is past its throttle and its start deadline; later items of the run
        # are not subject to them (the executor gives each the run's finish deadline).
        yield Sql(
            "UPDATE queue SET lease_owner = ?, lease_until = ?, throttle_key = NULL,"
            " deadline = NULL WHERE item_id = ? AND (lease_until IS NULL OR lease_until <= ?)",
            [(owner, lease_until, candidate.item_id, now) for candidate in taken],
            many=True,
        )
    if delayed:
        yield Sql(
            "UPDATE queue SET due_at = ? WHERE item_id = ?",
            [(due_at, item_id) for item_id, due_at in sorted(delayed.items())],
            many=True,
        )
    if tats:
        yield Sql(
            "INSERT INTO flow_state (key, tat, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, updated_at = excluded.updated_at",
            [(key, tat, now) for key, tat in sorted(tats.items())],
            many=True,
        )
    run_ids = sorted({candidate.run_id for candidate in taken})
    if run_ids:
        yield Sql(
            "UPDATE runs SET status = ?, started_at = ? WHERE run_id = ? AND status = ?",
            [(RunStatus.RUNNING.value, now, run_id, _QUEUED) for run_id in run_ids],
            many=True,
        )
        # A claimed run takes no more events: its debounce or batch group closes.
        yield Sql(f"DELETE FROM run_groups WHERE run_id IN ({marks(len(run_ids))})", run_ids)


# -- creating runs under rate limits, singletons and groups ------------------------------------


def create_flow_run(plan: PlannedRun) -> Program[RunRecord | str]:
    """Create one run whose flow control needs state (`RunFlow.needs_creation_state`), as
    `create_runs` would, after its rules: the idempotency key, the rate limit, the singleton, then
    the debounce or batch group, whose open run the event may join instead. Returns the record
    of the run it created, or the id of the run the caller must read back as this run's record:
    an already stored run (a retried create) or the group's run it joined."""
    run = plan.run
    stored = yield Sql("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,))
    if stored:  # a retried create: rate limits and groups must not count it twice
        return run.run_id
    status, reason = RunStatus.QUEUED, None
    if plan.duplicate_in_batch:
        status, reason = RunStatus.SKIPPED, DUPLICATE_REASON
    elif plan.claims_key:
        claimed = yield from _claim_key(run)
        if not claimed:
            status, reason = RunStatus.SKIPPED, DUPLICATE_REASON
    if status is RunStatus.QUEUED:
        status, reason = yield from _admit(run)
    due_at = run.start_at
    if status is RunStatus.QUEUED and run.flow.group is not None:
        joined, group_due_at = yield from _join_group(run)
        if joined is not None:
            return joined
        due_at = max(due_at, group_due_at)
    yield from _insert_run(plan, status, reason, due_at)
    return new_run_record(run, status, reason)


def _claim_key(run: NewRun) -> Generator[Sql, Rows, bool]:
    yield Sql(
        "INSERT INTO idempotency_keys (function_id, key, run_id, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (function_id, key) DO UPDATE SET run_id = excluded.run_id,"
        " created_at = excluded.created_at, expires_at = excluded.expires_at"
        " WHERE idempotency_keys.run_id = excluded.run_id"
        " OR idempotency_keys.expires_at <= excluded.created_at",
        (
            run.function_id,
            run.idempotency_key,
            run.run_id,
            run.created_at,
            run.idempotency_expires_at,
        ),
    )
    holder = yield Sql(
        "SELECT run_id FROM idempotency_keys WHERE function_id = ? AND key = ?",
        (run.function_id, run.idempotency_key),
    )
    return bool(holder) and holder[0][0] == run.run_id


def _admit(run: NewRun) -> Generator[Sql, Rows, tuple[RunStatus, str | None]]:
    """The rate limit, then the singleton: the run's status and, if Skipped, why."""
    flow = run.flow
    now = run.created_at
    if flow.rate_limit is not None:
        rule = flow.rate_limit
        rows = yield Sql("SELECT admitted FROM flow_state WHERE key = ?", (rule.key,))
        admitted = orjson.loads(rows[0][0]) if rows and rows[0][0] else []
        decision = rate_limit(admitted, now, rule.limit, rule.period_ms)
        yield Sql(
            "INSERT INTO flow_state (key, admitted, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET admitted = excluded.admitted,"
            " updated_at = excluded.updated_at",
            (rule.key, orjson.dumps(list(decision.window)).decode(), now),
        )
        if not decision.allowed:
            return RunStatus.SKIPPED, RATE_LIMITED_REASON
    if flow.singleton is not None:
        single = flow.singleton
        holders = yield Sql(
            f"SELECT s.run_id, r.status IN {ACTIVE_IN} FROM singleton_keys AS s"
            " LEFT JOIN runs AS r ON r.run_id = s.run_id WHERE s.function_id = ? AND s.key = ?",
            (run.function_id, single.key),
        )
        holder = holders[0][0] if holders else None
        decision_s = singleton(bool(holders and holders[0][1]), single.mode)
        if decision_s is SingletonDecision.SKIP and holder is not None:
            return RunStatus.SKIPPED, singleton_skipped_reason(holder)
        if decision_s is SingletonDecision.REPLACE and holder is not None:
            yield from _cancel(holder, now, singleton_replaced_reason(run.run_id))
        yield Sql(
            "INSERT INTO singleton_keys (function_id, key, run_id) VALUES (?, ?, ?)"
            " ON CONFLICT (function_id, key) DO UPDATE SET run_id = excluded.run_id",
            (run.function_id, single.key, run.run_id),
        )
    return RunStatus.QUEUED, None


def _cancel(run_id: str, now: Millis, reason: str) -> Generator[Sql, Rows, None]:
    yield Sql(
        f"UPDATE runs SET status = ?, ended_at = ?, reason = ? WHERE run_id = ? AND status IN {ACTIVE_IN}",
        (RunStatus.CANCELLED.value, now, reason, run_id),
    )
    yield Sql("DELETE FROM queue WHERE run_id = ?", (run_id,))
    yield Sql("DELETE FROM waits WHERE run_id = ?", (run_id,))


def _join_group(run: NewRun) -> Generator[Sql, Rows, tuple[str | None, Millis]]:
    """The open group's run the event joins (None: it opens a new group with `run`), and when
    the new run is due."""
    rule = run.flow.group
    assert rule is not None
    now = run.created_at
    rows = yield Sql(
        "SELECT g.run_id, g.first_at, g.size FROM run_groups AS g"
        " JOIN runs AS r ON r.run_id = g.run_id"
        " WHERE g.function_id = ? AND g.group_key = ? AND r.status = ?",
        (run.function_id, rule.key, _QUEUED),
    )
    group = OpenGroup(rows[0][0], int(rows[0][1]), int(rows[0][2])) if rows else None
    decision = on_event(rule, group, now)
    if group is None or not decision.join:
        # A stale row (its run was cancelled, say) goes; the new run opens the group.
        yield Sql(
            "DELETE FROM run_groups WHERE function_id = ? AND group_key = ?",
            (run.function_id, rule.key),
        )
        if not decision.close:
            yield Sql(
                "INSERT INTO run_groups (function_id, group_key, run_id, first_at, size)"
                " VALUES (?, ?, ?, ?, 1)",
                (run.function_id, rule.key, run.run_id, now),
            )
        return None, decision.due_at
    if rule.kind is GroupKind.DEBOUNCE:  # the run starts with the last event only
        yield Sql(
            "UPDATE run_events SET event_id = ? WHERE run_id = ? AND position = 0",
            (run.event_ids[0], group.run_id),
        )
    else:
        yield Sql(
            "INSERT INTO run_events (run_id, position, event_id) VALUES (?, ?, ?)",
            (group.run_id, group.size, run.event_ids[0]),
        )
    # The start deadline moves with the due time: waiting for the group is not waiting to start.
    yield Sql(
        "UPDATE queue SET deadline = deadline + (? - due_at), due_at = ?"
        " WHERE run_id = ? AND lease_owner IS NULL",
        (decision.due_at, decision.due_at, group.run_id),
    )
    if decision.close:
        yield Sql("DELETE FROM run_groups WHERE run_id = ?", (group.run_id,))
    else:
        yield Sql("UPDATE run_groups SET size = size + 1 WHERE run_id = ?", (group.run_id,))
    return group.run_id, decision.due_at


def _insert_run(
    plan: PlannedRun, status: RunStatus, reason: str | None, due_at: Millis
) -> Generator[Sql, Rows, None]:
    run = plan.run
    skipped = status is RunStatus.SKIPPED
    yield Sql(
        "INSERT INTO runs (run_id, function_id, status, created_at, ended_at, reason)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            run.run_id,
            run.function_id,
            status.value,
            run.created_at,
            run.created_at if skipped else None,
            reason if skipped else None,
        ),
    )
    yield Sql(
        "INSERT INTO run_events (run_id, position, event_id) VALUES (?, ?, ?)",
        [(run.run_id, position, event_id) for position, event_id in enumerate(run.event_ids)],
        many=True,
    )
    if not skipped:
        flow = run.flow
        if flow.start_deadline is not None and due_at > run.start_at:
            # Due later than planned (a group's wait): so is the deadline to start.
            flow = replace(flow, start_deadline=flow.start_deadline + due_at - run.start_at)
        yield Sql(
            f"INSERT INTO queue (item_id, run_id, due_at, attempt, {QUEUE_FLOW_COLUMNS})"
            " VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (plan.item_id, run.run_id, due_at, *queue_flow_values(flow)),
        )


# -- housekeeping ------------------------------------------------------------------------------


def prune(before: Millis) -> Program[None]:
    """Forget state nobody needs: throttle and rate-limit states last used before `before` (the
    caller passes a time older than any period), singleton keys whose run has ended, and cron ticks
    before `before` but a function's latest (the scheduler resumes from it; a tick's run is kept
    from firing twice by its event's id, derived from the tick, not by these rows)."""
    yield Sql("DELETE FROM flow_state WHERE updated_at < ?", (before,))
    yield Sql(
        "DELETE FROM singleton_keys WHERE NOT EXISTS (SELECT 1 FROM runs AS r"
        f" WHERE r.run_id = singleton_keys.run_id AND r.status IN {ACTIVE_IN})"
    )
    yield Sql(
        "DELETE FROM cron_ticks WHERE tick_at < ? AND tick_at < (SELECT max(c.tick_at)"
        " FROM cron_ticks AS c WHERE c.function_id = cron_ticks.function_id)",
        (before,),
    )
