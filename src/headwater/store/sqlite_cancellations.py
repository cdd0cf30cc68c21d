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
from headwater.store.queries import Cursor, claim_job_sql
from headwater.types import Millis

T = TypeVar("T")

_RUNNING: Final = CancellationState.RUNNING.value
#: The states in which a runner's progress is still saved (see `record_cancellation_progress`).
_SAVED: Final = (_RUNNING, CancellationState.STOPPED.value)
_MARKS: Final = ", ".join("?" * len(CANCELLATION_COLUMNS.split(",")))


_CLAIM_JOB: Final = claim_job_sql("cancellation_jobs", "?")


class _Plumbing(Protocol):
    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


class SQLiteCancellationVerbs:
    async def create_cancellation(self: _Plumbing, job: CancellationJob) -> None:
        params = cancellation_params(job)

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"INSERT INTO cancellation_jobs ({CANCELLATION_COLUMNS}) VALUES ({_MARKS})", params
            )

        await self._write(insert)

    async def get_cancellation(self: _Plumbing, job_id: str) -> CancellationJob | None:
        def select(connection: sqlite3.Connection) -> CancellationJob | None:
            row = connection.execute(
                f"SELECT {CANCELLATION_COLUMNS} FROM cancellation_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else cancellation_from_row(row)

        return await self._read(select)

    async def list_cancellations(
        self: _Plumbing, limit: int = 50, before_id: str | None = None
    ) -> list[CancellationJob]:
        where = " WHERE job_id < ?" if before_id is not None else ""
        params: tuple[object, ...] = (before_id, limit) if before_id is not None else (limit,)

        def select(connection: sqlite3.Connection) -> list[CancellationJob]:
            rows = connection.execute(
                f"SELECT {CANCELLATION_COLUMNS} FROM cancellation_jobs{where}"
                " ORDER BY job_id DESC LIMIT ?",
                params,
            )
            return [cancellation_from_row(row) for row in rows]

        return await self._read(select)

    async def running_cancellations(self: _Plumbing, limit: int = 100) -> list[CancellationJob]:
        def select(connection: sqlite3.Connection) -> list[CancellationJob]:
            rows = connection.execute(
                f"SELECT {CANCELLATION_COLUMNS} FROM cancellation_jobs WHERE state = ?"
                " ORDER BY job_id LIMIT ?",
                (_RUNNING, limit),
            )
            return [cancellation_from_row(row) for row in rows]

        return await self._read(select)

    async def claim_cancellation(
        self: _Plumbing, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            return (
                connection.execute(
                    _CLAIM_JOB,
                    (owner, lease_until, job_id, _RUNNING, owner, now),
                ).rowcount
                == 1
            )

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
            return (
                connection.execute(
                    "UPDATE cancellation_jobs SET state = ?, error = ?, updated_at = ?,"
                    " ended_at = ? WHERE job_id = ? AND state = ?",
                    (state.value, error, now, now, job_id, _RUNNING),
                ).rowcount
                == 1
            )

        return await self._write(update)
