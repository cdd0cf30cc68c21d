"""The run verbs of the SQLite backend, mixed into `SQLiteStore` (kept apart to keep each module
readable; the events and the plumbing are in sqlite.py).

The plumbing is the store's: each write verb is one job for the group-commit writer thread
(`_write`), so a verb's statements run in one transaction and no other write interleaves with them.
That is what makes read-then-write sequences here race-free (claiming reads the due items then
leases them; a step is numbered max + 1), with no locking of our own. Reads go to `_read`.

No `RETURNING` (SQLite 3.35): system SQLite libraries older than that are still common, and the
serialised writer makes a SELECT followed by an UPDATE exactly as good.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from headwater.store import flow_programs, retention
from headwater.store.base import EventRecord
from headwater.store.flow_programs import Program, Rows
from headwater.store.flow_rows import QUEUE_FLOW_COLUMNS, queue_flow_values
from headwater.store.retention import Deleted
from headwater.store.run_rules import (
    ACTIVE_IN,
    PlannedRun,
    new_run_record,
    plan_runs,
    require_final,
)
from headwater.store.runs import NewRun, QueueItem, RunRecord, RunStatus, StepRecord
from headwater.types import Millis

T = TypeVar("T")

_RUN_COLUMNS: Final = (
    "run_id, function_id, status, created_at, started_at, ended_at, output, error, reason"
)
#: Larger than any epoch ms: "no bound" for a range comparison that must stay an index range.
_NO_BOUND: Final = 2**63 - 1

#: Claim the key, or take it over from a holder whose expiry is at or before the new run's
#: creation. A retried create of the same run finds the key already its own and keeps it.
_CLAIM_KEY: Final = (
    "INSERT INTO idempotency_keys (function_id, key, run_id, created_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (function_id, key) DO UPDATE SET run_id = excluded.run_id,"
    " created_at = excluded.created_at, expires_at = excluded.expires_at"
    " WHERE idempotency_keys.run_id = excluded.run_id"
    " OR idempotency_keys.expires_at <= excluded.created_at"
)
#: The next number within the run. The SELECT's WHERE also keeps SQLite's parser from reading
#: `ON CONFLICT` as a join constraint (INSERT ... SELECT with an upsert needs one).
_RECORD_STEP: Final = (
    "INSERT INTO run_steps"
    " (run_id, step_id, seq, name, op, memo, started_at, ended_at, attempts)"
    " SELECT ?, ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ?, ? FROM run_steps WHERE run_id = ?"
    " ON CONFLICT (run_id, step_id) DO NOTHING"
)
#: The earliest time an item becomes claimable: the first unleased due time, or a leased item's
#: lease end (an expired one is in the past: due now). Only leased items due no later than the
#: first unleased one can be earlier, so both parts are range scans of `queue_by_due_at` over the
#: front of the queue (the in-flight items), not scans of the whole queue.
_NEXT_DUE_AT: Final = f"""
WITH free AS (
    SELECT due_at FROM queue WHERE lease_until IS NULL ORDER BY due_at, item_id LIMIT 1
)
SELECT min(at) FROM (
    SELECT due_at AS at FROM free
    UNION ALL
    SELECT max(due_at, lease_until) FROM queue
    WHERE lease_until IS NOT NULL
      AND due_at <= coalesce((SELECT due_at FROM free), {_NO_BOUND})
)
"""


class _Plumbing(Protocol):
    """What the mixin needs from `SQLiteStore`."""

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


class SQLiteRunVerbs:
    """The `Store` verbs for runs, steps and the queue (see base.py for their contracts)."""

    async def create_runs(self: _Plumbing, runs: Sequence[NewRun]) -> list[RunRecord]:
        """One job, so one transaction, for the whole batch. A run whose id is already stored
        (a retried create) is left as it is and its stored record returned."""
        if not runs:
            return []
        planned = plan_runs(runs)

        return await self._write(lambda connection: create_planned_runs(connection, planned))

    async def get_run(self: _Plumbing, run_id: str) -> RunRecord | None:
        return await self._read(lambda connection: _select_run(connection, run_id))

    async def list_runs_for_event(self: _Plumbing, event_internal_id: str) -> list[RunRecord]:
        def select(connection: sqlite3.Connection) -> list[RunRecord]:
            # IN, not a join: a run listing the event twice is still one run.
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id IN"
                " (SELECT run_id FROM run_events WHERE event_id = ?)"
                " ORDER BY created_at, run_id",
                (event_internal_id,),
            ).fetchall()
            return [_run_record(row, _event_ids(connection, row[0])) for row in rows]

        return await self._read(select)

    async def list_steps(self: _Plumbing, run_id: str) -> list[StepRecord]:
        def select(connection: sqlite3.Connection) -> list[StepRecord]:
            rows = connection.execute(
                "SELECT run_id, step_id, name, op, memo, started_at, ended_at, attempts"
                " FROM run_steps WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
            return [
                StepRecord(row[0], row[1], row[2], row[3], row[4].encode(), row[5], row[6], row[7])
                for row in rows
            ]

        return await self._read(select)

    async def claim_due(
        self: _Plumbing, owner: str, now: Millis, lease_ms: int, limit: int
    ) -> list[QueueItem]:
        if limit <= 0:  # SQLite would read a negative LIMIT as "all"
            return []
        lease_until = now + lease_ms

        def claim(connection: sqlite3.Connection) -> list[QueueItem]:
            return run_program(connection, flow_programs.claim(owner, now, lease_until, limit))

        return await self._write(claim)

    async def delete_expired(self: _Plumbing, cutoff: Millis, limit: int) -> Deleted:
        return await self._write(
            lambda connection: run_program(connection, retention.delete_expired(cutoff, limit))
        )

    async def prune_state(self: _Plumbing, before: Millis) -> None:
        await self._write(lambda connection: run_program(connection, flow_programs.prune(before)))

    async def next_due_at(self: _Plumbing) -> Millis | None:
        def select(connection: sqlite3.Connection) -> Millis | None:
            value = connection.execute(_NEXT_DUE_AT).fetchone()[0]
            return None if value is None else int(value)

        return await self._read(select)

    async def record_step(self: _Plumbing, step: StepRecord) -> bool:
        params = (
            step.run_id,
            step.step_id,
            step.name,
            step.op,
            step.memo_json.decode(),
            step.started_at,
            step.ended_at,
            step.attempts,
            step.run_id,
        )

        def insert(connection: sqlite3.Connection) -> bool:
            return connection.execute(_RECORD_STEP, params).rowcount == 1

        return await self._write(insert)

    async def reschedule(
        self: _Plumbing,
        item_id: str,
        owner: str,
        due_at: Millis,
        attempt: int,
        *,
        deadline: Millis | None = None,
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE queue SET due_at = ?, attempt = ?, deadline = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE item_id = ? AND lease_owner = ?",
                (due_at, attempt, deadline, item_id, owner),
            )
            return cursor.rowcount == 1

        return await self._write(update)

    async def finish_run(
        self: _Plumbing,
        run_id: str,
        item_id: str | None,
        owner: str | None,
        status: RunStatus,
        ended_at: Millis,
        *,
        output_json: bytes | None = None,
        error_json: bytes | None = None,
        reason: str | None = None,
        announce: Sequence[EventRecord] = (),
        announce_runs: Sequence[NewRun] = (),
    ) -> bool:
        require_final(status)
        planned = plan_runs(announce_runs) if announce_runs else []
        values = (
            status.value,
            ended_at,
            output_json.decode() if output_json is not None else None,
            error_json.decode() if error_json is not None else None,
            reason,
            run_id,
        )

        def finish(connection: sqlite3.Connection) -> bool:
            if item_id is not None:
                held = connection.execute(
                    "SELECT 1 FROM queue WHERE item_id = ? AND run_id = ? AND lease_owner = ?",
                    (item_id, run_id, owner),
                ).fetchone()
                if held is None:  # the lease was lost: whoever holds it now decides
                    return False
            cursor = connection.execute(
                "UPDATE runs SET status = ?, ended_at = ?, output = ?, error = ?, reason = ?"
                f" WHERE run_id = ? AND status IN {ACTIVE_IN}",
                values,
            )
            # Also when the run was already final: a final run must have nothing left to execute.
            connection.execute("DELETE FROM queue WHERE run_id = ?", (run_id,))
            finished = cursor.rowcount == 1
            if finished and announce:
                # Imported here: sqlite.py imports this module (it mixes these verbs in).
                from headwater.store.sqlite import append_in_transaction

                append_in_transaction(connection, announce, planned)
            return finished

        return await self._write(finish)

    async def extend_lease(self: _Plumbing, item_id: str, owner: str, lease_until: Millis) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE queue SET lease_until = ? WHERE item_id = ? AND lease_owner = ?",
                (lease_until, item_id, owner),
            )
            return cursor.rowcount == 1

        return await self._write(update)

    async def claim_cron_tick(self: _Plumbing, function_id: str, tick_at: Millis) -> bool:
        def insert(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "INSERT INTO cron_ticks (function_id, tick_at) VALUES (?, ?)"
                " ON CONFLICT (function_id, tick_at) DO NOTHING",
                (function_id, tick_at),
            )
            return cursor.rowcount == 1

        return await self._write(insert)

    async def last_cron_tick(self: _Plumbing, function_id: str) -> Millis | None:
        def select(connection: sqlite3.Connection) -> Millis | None:
            # max() over the key's range: SQLite reads it as one seek to the range's last entry.
            value = connection.execute(
                "SELECT max(tick_at) FROM cron_ticks WHERE function_id = ?", (function_id,)
            ).fetchone()[0]
            return None if value is None else int(value)

        return await self._read(select)


def create_planned_runs(
    connection: sqlite3.Connection, planned: Sequence[PlannedRun]
) -> list[RunRecord]:
    """Store a planned batch of runs, in order, inside the caller's write job."""
    return [_create_run(connection, plan) for plan in planned]


def _create_run(connection: sqlite3.Connection, plan: PlannedRun) -> RunRecord:
    """Store one run of a batch (inside the batch's job): its key, row, event links and item."""
    run = plan.run
    if run.flow.needs_creation_state:
        created = run_program(connection, flow_programs.create_flow_run(plan))
        if isinstance(created, RunRecord):
            return created
        stored = _select_run(connection, created)
        assert stored is not None  # found by the program in this same transaction
        return stored
    status = RunStatus.SKIPPED if plan.duplicate_in_batch else RunStatus.QUEUED
    if plan.claims_key:
        before = connection.total_changes  # counts an upsert's update as well as an insert
        connection.execute(
            _CLAIM_KEY,
            (
                run.function_id,
                run.idempotency_key,
                run.run_id,
                run.created_at,
                run.idempotency_expires_at,
            ),
        )
        if connection.total_changes == before:
            status = RunStatus.SKIPPED
    record = new_run_record(run, status)
    cursor = connection.execute(
        "INSERT INTO runs (run_id, function_id, status, created_at, ended_at, reason)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
        (
            run.run_id,
            run.function_id,
            status.value,
            run.created_at,
            record.ended_at,
            record.reason,
        ),
    )
    if cursor.rowcount == 0:
        stored = _select_run(connection, run.run_id)
        assert stored is not None  # the conflicting row, in this same transaction
        return stored
    connection.executemany(
        "INSERT INTO run_events (run_id, position, event_id) VALUES (?, ?, ?)",
        [(run.run_id, position, event_id) for position, event_id in enumerate(run.event_ids)],
    )
    if status is RunStatus.QUEUED:
        connection.execute(
            f"INSERT INTO queue (item_id, run_id, due_at, attempt, {QUEUE_FLOW_COLUMNS})"
            " VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (plan.item_id, run.run_id, run.start_at, *queue_flow_values(run.flow)),
        )
    return record


def _select_run(connection: sqlite3.Connection, run_id: str) -> RunRecord | None:
    row = connection.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else _run_record(row, _event_ids(connection, run_id))


def _event_ids(connection: sqlite3.Connection, run_id: str) -> tuple[str, ...]:
    """A run's events in their order. A query of its own rather than `group_concat` in the run's
    query: SQLite only promises an aggregate's order from 3.44 (`ORDER BY` inside it). The links
    never change after the run is created, so reading them separately is consistent."""
    rows = connection.execute(
        "SELECT event_id FROM run_events WHERE run_id = ? ORDER BY position", (run_id,)
    )
    return tuple(row[0] for row in rows)


def _run_record(row: Sequence[Any], event_ids: tuple[str, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        function_id=row[1],
        status=RunStatus(row[2]),
        event_ids=event_ids,
        created_at=row[3],
        started_at=row[4],
        ended_at=row[5],
        output_json=row[6].encode() if row[6] is not None else None,
        error_json=row[7].encode() if row[7] is not None else None,
        reason=row[8],
    )


def run_program(connection: sqlite3.Connection, program: Program[T]) -> T:
    """Run a program on SQLite (inside the caller's write job, so one transaction)."""
    try:
        statement = next(program)
        while True:
            if statement.many:
                connection.executemany(statement.text, statement.params)
                rows: Rows = []
            else:
                rows = connection.execute(statement.text, statement.params).fetchall()
            statement = program.send(rows)
    except StopIteration as stop:
        result: T = stop.value
        return result
