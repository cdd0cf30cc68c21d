"""Bulk cancellations on PostgreSQL (see cancellations.py for the contracts), mixed into
`PostgresStore` like the other verbs: each verb is one statement, so one transaction."""

from __future__ import annotations

from typing import Any, Final, Protocol

from psycopg.abc import Params

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

_RUNNING: Final = CancellationState.RUNNING.value
#: The states in which a runner's progress is still saved (see `record_cancellation_progress`).
_SAVED: Final = (_RUNNING, CancellationState.STOPPED.value)
_SQL: Final = job_table_sql("cancellation_jobs", CANCELLATION_COLUMNS, "%s")


class _Plumbing(Protocol):
    async def _fetch(self, sql: str, params: Params) -> list[tuple[Any, ...]]: ...

    async def _rowcount(self, sql: str, params: Params) -> int: ...


class PostgresCancellationVerbs:
    async def create_cancellation(self: _Plumbing, job: CancellationJob) -> None:
        await self._rowcount(_SQL.insert, cancellation_params(job))

    async def get_cancellation(self: _Plumbing, job_id: str) -> CancellationJob | None:
        rows = await self._fetch(_SQL.get, (job_id,))
        return cancellation_from_row(rows[0]) if rows else None

    async def list_cancellations(
        self: _Plumbing, limit: int = 50, before_id: str | None = None
    ) -> list[CancellationJob]:
        sql = _SQL.page if before_id is None else _SQL.page_before
        rows = await self._fetch(sql, page_params(limit, before_id))
        return [cancellation_from_row(row) for row in rows]

    async def running_cancellations(self: _Plumbing, limit: int = 100) -> list[CancellationJob]:
        rows = await self._fetch(_SQL.running, (_RUNNING, limit))
        return [cancellation_from_row(row) for row in rows]

    async def claim_cancellation(
        self: _Plumbing, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        updated = await self._rowcount(
            _SQL.claim, (owner, lease_until, job_id, _RUNNING, owner, now)
        )
        return updated == 1

    async def record_cancellation_progress(
        self: _Plumbing,
        job_id: str,
        owner: str,
        cancelled: int,
        cursor: Cursor,
        now: Millis,
        lease_until: Millis,
    ) -> bool:
        rows = await self._fetch(
            "UPDATE cancellation_jobs SET cancelled = %s, cursor_created_at = %s,"
            " cursor_run_id = %s, updated_at = %s, lease_until = %s"
            " WHERE job_id = %s AND state IN (%s, %s) AND lease_owner = %s RETURNING state",
            (cancelled, cursor.at, cursor.id, now, lease_until, job_id, *_SAVED, owner),
        )
        return bool(rows) and rows[0][0] == _RUNNING

    async def end_cancellation(
        self: _Plumbing,
        job_id: str,
        state: CancellationState,
        now: Millis,
        error: str | None = None,
    ) -> bool:
        updated = await self._rowcount(_SQL.end, (state.value, error, now, now, job_id, _RUNNING))
        return updated == 1
