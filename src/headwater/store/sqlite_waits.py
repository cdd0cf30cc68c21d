"""The wait verbs of the SQLite backend (`step.wait_for_event`, `cancel_on`), mixed into
`SQLiteStore` like the run verbs; each write is one job of the group-commit writer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from headwater.store.run_rules import (
    ACTIVE_IN,
    WAIT_COLUMNS,
    wait_from_row,
    wait_params,
)
from headwater.store.runs import RunRecord, StepRecord, WaitRecord
from headwater.store.sqlite_runs import _RECORD_STEP, _RUN_COLUMNS, _event_ids, _run_record
from headwater.types import Millis

T = TypeVar("T")

_INSERT_WAIT: Final = (
    f"INSERT INTO waits ({WAIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
)
_QUALIFIED: Final = ", ".join(f"w.{column.strip()}" for column in WAIT_COLUMNS.split(","))


class _Plumbing(Protocol):
    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


class SQLiteWaitVerbs:
    async def park_for_wait(
        self: _Plumbing,
        item_id: str,
        owner: str,
        wait: WaitRecord,
        *,
        deadline: Millis | None = None,
    ) -> bool:
        def park(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE queue SET due_at = ?, attempt = 0, deadline = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE item_id = ? AND lease_owner = ?",
                (wait.expires_at, deadline, item_id, owner),
            )
            if cursor.rowcount != 1:
                return False
            connection.execute(_INSERT_WAIT, wait_params(wait))
            return True

        return await self._write(park)

    async def add_waits(self: _Plumbing, waits: Sequence[WaitRecord]) -> None:
        rows = [wait_params(wait) for wait in waits]
        if rows:
            await self._write(lambda connection: connection.executemany(_INSERT_WAIT, rows))

    async def pending_waits(self: _Plumbing, event_name: str, now: Millis) -> list[WaitRecord]:
        def select(connection: sqlite3.Connection) -> list[WaitRecord]:
            rows = connection.execute(
                f"SELECT {_QUALIFIED} FROM waits AS w JOIN runs AS r ON r.run_id = w.run_id"
                f" WHERE w.event_name = ? AND w.expires_at > ? AND r.status IN {ACTIVE_IN}"
                " ORDER BY w.created_at, w.wait_id",
                (event_name, now),
            )
            return [wait_from_row(row) for row in rows]

        return await self._read(select)

    async def waits_of_run(self: _Plumbing, run_id: str) -> list[WaitRecord]:
        def select(connection: sqlite3.Connection) -> list[WaitRecord]:
            rows = connection.execute(
                f"SELECT {WAIT_COLUMNS} FROM waits WHERE run_id = ? ORDER BY created_at, wait_id",
                (run_id,),
            )
            return [wait_from_row(row) for row in rows]

        return await self._read(select)

    async def resolve_step_wait(
        self: _Plumbing, wait_id: str, step: StepRecord, now: Millis
    ) -> bool:
        step_params = (
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

        def resolve(connection: sqlite3.Connection) -> bool:
            if connection.execute("DELETE FROM waits WHERE wait_id = ?", (wait_id,)).rowcount != 1:
                return False
            connection.execute(_RECORD_STEP, step_params)
            connection.execute(
                "UPDATE queue SET due_at = ? WHERE run_id = ? AND lease_until IS NULL AND due_at > ?",
                (now, step.run_id, now),
            )
            return True

        return await self._write(resolve)

    async def delete_wait(self: _Plumbing, wait_id: str) -> bool:
        return await self._write(
            lambda connection: (
                connection.execute("DELETE FROM waits WHERE wait_id = ?", (wait_id,)).rowcount == 1
            )
        )

    async def wait_event_names(self: _Plumbing, now: Millis) -> set[str]:
        def select(connection: sqlite3.Connection) -> set[str]:
            rows = connection.execute(
                "SELECT DISTINCT event_name FROM waits WHERE expires_at > ?", (now,)
            )
            return {row[0] for row in rows}

        return await self._read(select)

    async def active_runs(
        self: _Plumbing, function_id: str, created_after: Millis, created_before: Millis, limit: int
    ) -> list[RunRecord]:
        def select(connection: sqlite3.Connection) -> list[RunRecord]:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE function_id = ? AND created_at >= ?"
                f" AND created_at < ? AND status IN {ACTIVE_IN} ORDER BY created_at, run_id LIMIT ?",
                (function_id, created_after, created_before, limit),
            ).fetchall()
            return [_run_record(row, _event_ids(connection, row[0])) for row in rows]

        return await self._read(select)
