"""The wait verbs of the PostgreSQL backend (`step.wait_for_event`, `cancel_on`), mixed into
`PostgresStore` like the run verbs: each verb is one statement (CTEs where several tables change),
so each is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

from psycopg.abc import Params

from headwater.store.postgres_runs import _RUN_COLUMNS, _run_record
from headwater.store.run_rules import (
    ACTIVE_IN,
    WAIT_COLUMNS,
    wait_from_row,
    wait_params,
)
from headwater.store.runs import RunRecord, StepRecord, WaitRecord
from headwater.types import Millis

_QUALIFIED: Final = ", ".join(f"w.{column.strip()}" for column in WAIT_COLUMNS.split(","))
_VALUES: Final = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"

#: Release the lease and store the wait only if the lease is still ours.
_PARK: Final = f"""
WITH parked AS (
    UPDATE queue SET due_at = %s, attempt = 0, deadline = %s, lease_owner = NULL,
        lease_until = NULL
    WHERE item_id = %s AND lease_owner = %s
    RETURNING item_id
), stored AS (
    INSERT INTO waits ({WAIT_COLUMNS})
    SELECT * FROM (VALUES {_VALUES}) AS v WHERE EXISTS (SELECT 1 FROM parked)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM parked
"""

#: Delete the wait; only if that happened, record the memo and wake the run's unleased items.
_RESOLVE: Final = """
WITH gone AS (
    DELETE FROM waits WHERE wait_id = %(wait_id)s RETURNING run_id
), step AS (
    INSERT INTO run_steps (run_id, step_id, name, op, memo, started_at, ended_at, attempts)
    SELECT %(run_id)s, %(step_id)s, %(name)s, %(op)s, %(memo)s::jsonb, %(started_at)s,
        %(ended_at)s, %(attempts)s
    WHERE EXISTS (SELECT 1 FROM gone)
    ON CONFLICT (run_id, step_id) DO NOTHING
), woken AS (
    UPDATE queue SET due_at = %(now)s
    WHERE run_id = %(run_id)s AND lease_until IS NULL AND due_at > %(now)s
        AND EXISTS (SELECT 1 FROM gone)
)
SELECT count(*) FROM gone
"""


class _Plumbing(Protocol):
    async def _fetch(self, sql: str, params: Params) -> list[tuple[Any, ...]]: ...

    async def _rowcount(self, sql: str, params: Params) -> int: ...

    async def _notify_queue(self) -> None: ...


class PostgresWaitVerbs:
    async def park_for_wait(
        self: _Plumbing,
        item_id: str,
        owner: str,
        wait: WaitRecord,
        *,
        deadline: Millis | None = None,
    ) -> bool:
        rows = await self._fetch(
            _PARK, (wait.expires_at, deadline, item_id, owner, *wait_params(wait))
        )
        parked = bool(rows[0][0])
        if parked:
            await self._notify_queue()  # a concurrency slot is free again
        return parked

    async def add_waits(self: _Plumbing, waits: Sequence[WaitRecord]) -> None:
        for wait in waits:
            await self._rowcount(
                f"INSERT INTO waits ({WAIT_COLUMNS}) VALUES {_VALUES} ON CONFLICT DO NOTHING",
                wait_params(wait),
            )

    async def pending_waits(self: _Plumbing, event_name: str, now: Millis) -> list[WaitRecord]:
        rows = await self._fetch(
            f"SELECT {_QUALIFIED} FROM waits AS w JOIN runs AS r ON r.run_id = w.run_id"
            f" WHERE w.event_name = %s AND w.expires_at > %s AND r.status IN {ACTIVE_IN}"
            " ORDER BY w.created_at, w.wait_id",
            (event_name, now),
        )
        return [wait_from_row(row) for row in rows]

    async def waits_of_run(self: _Plumbing, run_id: str) -> list[WaitRecord]:
        rows = await self._fetch(
            f"SELECT {WAIT_COLUMNS} FROM waits WHERE run_id = %s ORDER BY created_at, wait_id",
            (run_id,),
        )
        return [wait_from_row(row) for row in rows]

    async def resolve_step_wait(
        self: _Plumbing, wait_id: str, step: StepRecord, now: Millis
    ) -> bool:
        rows = await self._fetch(
            _RESOLVE,
            {
                "wait_id": wait_id,
                "run_id": step.run_id,
                "step_id": step.step_id,
                "name": step.name,
                "op": step.op,
                "memo": step.memo_json.decode(),
                "started_at": step.started_at,
                "ended_at": step.ended_at,
                "attempts": step.attempts,
                "now": now,
            },
        )
        resolved = bool(rows[0][0])
        if resolved:
            await self._notify_queue()  # the run is due now; any process may resume it
        return resolved

    async def delete_wait(self: _Plumbing, wait_id: str) -> bool:
        return await self._rowcount("DELETE FROM waits WHERE wait_id = %s", (wait_id,)) == 1

    async def wait_event_names(self: _Plumbing, now: Millis) -> set[str]:
        rows = await self._fetch(
            "SELECT DISTINCT event_name FROM waits WHERE expires_at > %s", (now,)
        )
        return {row[0] for row in rows}

    async def active_runs(
        self: _Plumbing, function_id: str, created_after: Millis, created_before: Millis, limit: int
    ) -> list[RunRecord]:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs AS r WHERE r.function_id = %s"
            f" AND r.created_at >= %s AND r.created_at < %s AND r.status IN {ACTIVE_IN}"
            " ORDER BY r.created_at, r.run_id LIMIT %s",
            (function_id, created_after, created_before, limit),
        )
        return [_run_record(row) for row in rows]
