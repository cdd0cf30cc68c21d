"""The dashboard's reads and replay's writes on SQLite (see queries.py for the contracts), mixed
into `SQLiteStore` like the run verbs: reads on the reader pool, each write one job of the
group-commit writer, so one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from headwater.store.base import EventRecord
from headwater.store.job_tables import job_table_sql, page_params
from headwater.store.queries import (
    COUNT_CAP,
    REPLAY_JOB_COLUMNS,
    Cursor,
    EventPage,
    ReplayJob,
    ReplayJobState,
    ReplayLink,
    RunCounts,
    RunQuery,
    replay_job_from_row,
    replay_job_params,
)
from headwater.store.run_rules import plan_runs
from headwater.store.runs import NewRun, RunRecord, RunStatus, StepRecord
from headwater.store.sqlite_runs import _RUN_COLUMNS, _event_ids, _run_record, create_planned_runs
from headwater.types import Millis

T = TypeVar("T")

_RUNNING: Final = ReplayJobState.RUNNING.value


_JOBS: Final = job_table_sql("replay_jobs", REPLAY_JOB_COLUMNS, "?")


class _Plumbing(Protocol):
    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


def _bounded_count(connection: sqlite3.Connection, sql: str, params: Sequence[object]) -> int:
    """count(*) of a query's first rows only: an index range scan that stops at the cap."""
    row = connection.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", (*params,)).fetchone()
    return int(row[0])


class SQLiteQueryVerbs:
    async def list_events_received(self: _Plumbing, page: EventPage) -> list[EventRecord]:
        # Imported here: sqlite.py imports this module to build its store class.
        from headwater.store.sqlite import _EVENT_COLUMNS, _event_record

        where, params = page.where("?")
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events{where}"
            " ORDER BY received_at DESC, internal_id DESC LIMIT ?"
        )
        params.append(page.filters.limit)

        def select(connection: sqlite3.Connection) -> list[EventRecord]:
            return [_event_record(row) for row in connection.execute(sql, params)]

        return await self._read(select)

    async def list_runs(self: _Plumbing, query: RunQuery) -> list[RunRecord]:
        where, params = query.where("?")
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY created_at DESC, run_id DESC LIMIT ?"
        )
        params.append(query.limit)

        def select(connection: sqlite3.Connection) -> list[RunRecord]:
            rows = connection.execute(sql, params).fetchall()
            return [_run_record(row, _event_ids(connection, row[0])) for row in rows]

        return await self._read(select)

    async def count_runs(
        self: _Plumbing,
        function_id: str | None,
        created_after: Millis,
        created_before: Millis,
        cap: int = COUNT_CAP,
    ) -> RunCounts:
        scope = "function_id = ? AND " if function_id is not None else ""
        sql = f"SELECT 1 FROM runs WHERE {scope}status = ? AND created_at >= ? AND created_at < ?"

        def count(connection: sqlite3.Connection) -> RunCounts:
            counts: dict[RunStatus, int] = {}
            for status in RunStatus:
                params: list[object] = [function_id] if function_id is not None else []
                params += [status.value, created_after, created_before, cap]
                found = _bounded_count(connection, sql, params)
                if found:
                    counts[status] = found
            return RunCounts(counts, cap)

        return await self._read(count)

    async def create_replay(
        self: _Plumbing, run: NewRun, link: ReplayLink, copied_steps: Sequence[StepRecord]
    ) -> RunRecord:
        if run.idempotency_key is not None:
            raise ValueError("a replay has no idempotency key")
        planned = plan_runs([run])
        steps = [
            (
                run.run_id,
                step.step_id,
                seq,
                step.name,
                step.op,
                step.memo_json.decode(),
                step.started_at,
                step.ended_at,
                step.attempts,
            )
            for seq, step in enumerate(copied_steps, start=1)
        ]

        def create(connection: sqlite3.Connection) -> RunRecord:
            (record,) = create_planned_runs(connection, planned)
            connection.executemany(
                "INSERT INTO run_steps"
                " (run_id, step_id, seq, name, op, memo, started_at, ended_at, attempts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                steps,
            )
            connection.execute(
                "INSERT INTO run_replays (run_id, replay_of, from_step, job_id) VALUES (?, ?, ?, ?)",
                (run.run_id, link.replay_of, link.from_step, link.job_id),
            )
            return record

        return await self._write(create)

    async def replay_link(self: _Plumbing, run_id: str) -> ReplayLink | None:
        def select(connection: sqlite3.Connection) -> ReplayLink | None:
            row = connection.execute(
                "SELECT run_id, replay_of, from_step, job_id FROM run_replays WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            return None if row is None else ReplayLink(row[0], row[1], row[2], row[3])

        return await self._read(select)

    async def replays_of(self: _Plumbing, run_id: str, limit: int = 20) -> list[str]:
        def select(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                "SELECT run_id FROM run_replays WHERE replay_of = ? ORDER BY run_id DESC LIMIT ?",
                (run_id, limit),
            )
            return [row[0] for row in rows]

        return await self._read(select)

    async def create_replay_job(self: _Plumbing, job: ReplayJob) -> None:
        params = replay_job_params(job)

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(_JOBS.insert, params)

        await self._write(insert)

    async def get_replay_job(self: _Plumbing, job_id: str) -> ReplayJob | None:
        def select(connection: sqlite3.Connection) -> ReplayJob | None:
            row = connection.execute(_JOBS.get, (job_id,)).fetchone()
            return None if row is None else replay_job_from_row(row)

        return await self._read(select)

    async def list_replay_jobs(
        self: _Plumbing, limit: int = 50, before_id: str | None = None
    ) -> list[ReplayJob]:
        sql = _JOBS.page if before_id is None else _JOBS.page_before
        params = page_params(limit, before_id)

        def select(connection: sqlite3.Connection) -> list[ReplayJob]:
            return [replay_job_from_row(row) for row in connection.execute(sql, params)]

        return await self._read(select)

    async def running_replay_jobs(self: _Plumbing, limit: int = 100) -> list[ReplayJob]:
        def select(connection: sqlite3.Connection) -> list[ReplayJob]:
            rows = connection.execute(_JOBS.running, (_RUNNING, limit))
            return [replay_job_from_row(row) for row in rows]

        return await self._read(select)

    async def claim_replay_job(
        self: _Plumbing, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            params = (owner, lease_until, job_id, _RUNNING, owner, now)
            return connection.execute(_JOBS.claim, params).rowcount == 1

        return await self._write(update)

    async def record_replay_progress(
        self: _Plumbing,
        job_id: str,
        owner: str,
        replayed: int,
        cursor: Cursor,
        now: Millis,
        lease_until: Millis,
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            return (
                connection.execute(
                    "UPDATE replay_jobs SET replayed = ?, cursor_created_at = ?, cursor_run_id = ?,"
                    " updated_at = ?, lease_until = ? WHERE job_id = ? AND state = ?"
                    " AND lease_owner = ?",
                    (replayed, cursor.at, cursor.id, now, lease_until, job_id, _RUNNING, owner),
                ).rowcount
                == 1
            )

        return await self._write(update)

    async def end_replay_job(
        self: _Plumbing, job_id: str, state: ReplayJobState, now: Millis, error: str | None = None
    ) -> bool:
        def update(connection: sqlite3.Connection) -> bool:
            params = (state.value, error, now, now, job_id, _RUNNING)
            return connection.execute(_JOBS.end, params).rowcount == 1

        return await self._write(update)
