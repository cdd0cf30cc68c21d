"""Bulk cancellations on SQLite (see cancellations.py for the contracts), mixed into
`SQLiteStore` like the other verbs: reads on the reader pool, each write one job of the
group-commit writer, so one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

from headwater.store.cancellations import (
    CANCELLATION_COLUMNS,
    CancellationJob,
    CancellationState,
    cancellation_from_row,
    cancellation_params,
)
from headwater.store.job_tables import job_table_sql, page_params
from headwater.store.queries import Cursor
from headwater.types import Millis

T = TypeVar("T")

_RUNNING: Final = CancellationState.RUNNING.value
#: The states in which a runner's progress is still saved (see `record_cancellation_progress`).
_SAVED: Final = (_RUNNING, CancellationState.STOPPED.value)
_SQL: Final = job_table_sql("cancellation_jobs", CANCELLATION_COLUMNS, "?")


class _Plumbing(Protocol):
    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


class SQLiteCancellationVerbs:
    async def create_cancellation(self: _Plumbing, job: CancellationJob) -> None:
        params = cancellation_params(job)

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(_SQL.insert, params)

        await self._write(insert)

    async def get_cancellation(self: _Plumbing, job_id: str) -> CancellationJob | None:
        def select(connection: sqlite3.Connection) -> CancellationJob | None:
            row = connection.execute(_SQL.get, (job_id,)).fetchone()
            return None if row is None else cancellation_from_row(row)

        return await self._read(select)

    async def list_cancellations(
        self: _Plumbing, limit: int = 50, before_id: str | None = None
    ) -> list[CancellationJob]:
        sql = _SQL.page if before_id is None else _SQL.page_before
        params = page_params(limit, before_id)

        def select(connection: sqlite3.Connection) -> list[CancellationJob]:
            return [cancellation_from_row(row) for row in connection.execute(sql, params)]

        return await self._read(select)

    async def running_cancellations(self: _Plumbing, limit: int = 100) -> list[CancellationJob]:
        def select(connection: sqlite3.Connection) -> list[CancellationJob]:
            rows = connection.execute(_SQL.running, (_RUNNING, limit))
            return [cancellation_from_row(row) for row in rows]

        return await self._read(select)

    async def claim_cancellation(
        self: _Plumbing, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            params = (owner, lease_until, job_id, _RUNNING, owner, now)
            return connection.execute(_SQL.claim, params).rowcount == 1

        return await self._write(update)

    async def record_cancellation_progress(
        self: _Plumbing,
        job_id: str,
        owner: str,
        cancelled: int,
        cursor: Cursor,
        now: Millis,
        lease_until: Millis,
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            saved = connection.execute(
                "UPDATE cancellation_jobs SET cancelled = ?, cursor_created_at = ?,"
                " cursor_run_id = ?, updated_at = ?, lease_until = ?"
                " WHERE job_id = ? AND state IN (?, ?) AND lease_owner = ?",
                (cancelled, cursor.at, cursor.id, now, lease_until, job_id, *_SAVED, owner),
            ).rowcount
            if saved != 1:
                return False
            row = connection.execute(
                "SELECT state FROM cancellation_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return bool(row[0] == _RUNNING)

        return await self._write(update)

    async def end_cancellation(
        self: _Plumbing,
        job_id: str,
        state: CancellationState,
        now: Millis,
        error: str | None = None,
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            params = (state.value, error, now, now, job_id, _RUNNING)
            return connection.execute(_SQL.end, params).rowcount == 1

        return await self._write(update)
