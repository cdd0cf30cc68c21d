"""The dashboard's reads and replay's writes on PostgreSQL (see queries.py for the contracts),
mixed into `PostgresStore` like the run verbs: each verb is one statement, so one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

from psycopg.abc import Params

from headwater.store.base import EventRecord
from headwater.store.job_tables import job_table_sql, page_params
from headwater.store.postgres_runs import (
    _RUN_COLUMNS,
    _create_runs_ctes,
    _run_record,
    run_batch_params,
)
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
from headwater.store.run_rules import new_run_record, plan_runs
from headwater.store.runs import NewRun, RunRecord, RunStatus, StepRecord
from headwater.types import Millis

_RUNNING: Final = ReplayJobState.RUNNING.value

#: The run as `create_runs` creates it (the same CTEs), then its copied memos and its link, only
#: if the run was new. One statement: the foreign keys of the memos and the link are checked at
#: its end, when the run exists.
_CREATE_REPLAY: Final = f"""
WITH {_create_runs_ctes("")},
copied AS (
    INSERT INTO run_steps (run_id, step_id, name, op, memo, started_at, ended_at, attempts)
    SELECT %(r_run_id)s, s.step_id, s.name, s.op, s.memo::jsonb, s.started_at, s.ended_at,
        s.attempts
    FROM unnest(%(s_step_id)b::text[], %(s_name)b::text[], %(s_op)b::text[], %(s_memo)b::text[],
        %(s_started_at)b::int8[], %(s_ended_at)b::int8[], %(s_attempts)b::int4[])
        WITH ORDINALITY AS s(step_id, name, op, memo, started_at, ended_at, attempts, ord)
    WHERE EXISTS (SELECT 1 FROM inserted)
    ORDER BY s.ord
), replay_linked AS (
    INSERT INTO run_replays (run_id, replay_of, from_step, job_id)
    SELECT %(r_run_id)s, %(r_replay_of)s, %(r_from_step)s, %(r_job_id)s
    WHERE EXISTS (SELECT 1 FROM inserted)
)
SELECT status FROM decided
"""


_JOBS: Final = job_table_sql("replay_jobs", REPLAY_JOB_COLUMNS, "%s")


class _Plumbing(Protocol):
    async def _fetch(self, sql: str, params: Params) -> list[tuple[Any, ...]]: ...

    async def _rowcount(self, sql: str, params: Params) -> int: ...


class PostgresQueryVerbs:
    async def list_events_received(self: _Plumbing, page: EventPage) -> list[EventRecord]:
        # Imported here: postgres.py imports this module to build its store class.
        from headwater.store.postgres import _SELECT_EVENT, _event_record

        where, params = page.where("%s")
        params.append(page.filters.limit)
        rows = await self._fetch(
            f"{_SELECT_EVENT}{where} ORDER BY received_at DESC, internal_id DESC LIMIT %s", params
        )
        return [_event_record(row) for row in rows]

    async def list_runs(self: _Plumbing, query: RunQuery) -> list[RunRecord]:
        where, params = query.where("%s")
        params.append(query.limit)
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs AS r{where}"
            " ORDER BY created_at DESC, run_id DESC LIMIT %s",
            params,
        )
        return [_run_record(row) for row in rows]

    async def count_runs(
        self: _Plumbing,
        function_id: str | None,
        created_after: Millis,
        created_before: Millis,
        cap: int = COUNT_CAP,
    ) -> RunCounts:
        # One bounded index-only scan per status, all in one statement (one round trip).
        scope = "function_id = %(function_id)s AND " if function_id is not None else ""
        parts = [
            f"SELECT '{status.value}', (SELECT count(*) FROM (SELECT 1 FROM runs WHERE {scope}"
            f"status = '{status.value}' AND created_at >= %(after)s AND created_at < %(before)s"
            " LIMIT %(cap)s) AS bounded)"
            for status in RunStatus
        ]
        rows = await self._fetch(
            " UNION ALL ".join(parts),
            {
                "function_id": function_id,
                "after": created_after,
                "before": created_before,
                "cap": cap,
            },
        )
        return RunCounts({RunStatus(row[0]): int(row[1]) for row in rows if row[1]}, cap)

    async def create_replay(
        self: _Plumbing, run: NewRun, link: ReplayLink, copied_steps: Sequence[StepRecord]
    ) -> RunRecord:
        if run.idempotency_key is not None:
            raise ValueError("a replay has no idempotency key")
        params = run_batch_params(plan_runs([run])) | {
            "r_run_id": run.run_id,
            "r_replay_of": link.replay_of,
            "r_from_step": link.from_step,
            "r_job_id": link.job_id,
            "s_step_id": [step.step_id for step in copied_steps],
            "s_name": [step.name for step in copied_steps],
            "s_op": [step.op for step in copied_steps],
            "s_memo": [step.memo_json.decode() for step in copied_steps],
            "s_started_at": [step.started_at for step in copied_steps],
            "s_ended_at": [step.ended_at for step in copied_steps],
            "s_attempts": [step.attempts for step in copied_steps],
        }
        rows = await self._fetch(_CREATE_REPLAY, params)
        return new_run_record(run, RunStatus(rows[0][0]))

    async def replay_link(self: _Plumbing, run_id: str) -> ReplayLink | None:
        rows = await self._fetch(
            "SELECT run_id, replay_of, from_step, job_id FROM run_replays WHERE run_id = %s",
            (run_id,),
        )
        return ReplayLink(*rows[0]) if rows else None

    async def replays_of(self: _Plumbing, run_id: str, limit: int = 20) -> list[str]:
        rows = await self._fetch(
            "SELECT run_id FROM run_replays WHERE replay_of = %s ORDER BY run_id DESC LIMIT %s",
            (run_id, limit),
        )
        return [row[0] for row in rows]

    async def create_replay_job(self: _Plumbing, job: ReplayJob) -> None:
        await self._rowcount(_JOBS.insert, replay_job_params(job))

    async def get_replay_job(self: _Plumbing, job_id: str) -> ReplayJob | None:
        rows = await self._fetch(_JOBS.get, (job_id,))
        return replay_job_from_row(rows[0]) if rows else None

    async def list_replay_jobs(
        self: _Plumbing, limit: int = 50, before_id: str | None = None
    ) -> list[ReplayJob]:
        sql = _JOBS.page if before_id is None else _JOBS.page_before
        rows = await self._fetch(sql, page_params(limit, before_id))
        return [replay_job_from_row(row) for row in rows]

    async def running_replay_jobs(self: _Plumbing, limit: int = 100) -> list[ReplayJob]:
        rows = await self._fetch(_JOBS.running, (_RUNNING, limit))
        return [replay_job_from_row(row) for row in rows]

    async def claim_replay_job(
        self: _Plumbing, job_id: str, owner: str, now: Millis, lease_until: Millis
    ) -> bool:
        updated = await self._rowcount(
            _JOBS.claim, (owner, lease_until, job_id, _RUNNING, owner, now)
        )
        return updated == 1

    async def record_replay_progress(
        self: _Plumbing,
        job_id: str,
        owner: str,
        replayed: int,
        cursor: Cursor,
        now: Millis,
        lease_until: Millis,
    ) -> bool:
        updated = await self._rowcount(
            "UPDATE replay_jobs SET replayed = %s, cursor_created_at = %s, cursor_run_id = %s,"
            " updated_at = %s, lease_until = %s WHERE job_id = %s AND state = %s"
            " AND lease_owner = %s",
            (replayed, cursor.at, cursor.id, now, lease_until, job_id, _RUNNING, owner),
        )
        return updated == 1

    async def end_replay_job(
        self: _Plumbing, job_id: str, state: ReplayJobState, now: Millis, error: str | None = None
    ) -> bool:
        updated = await self._rowcount(_JOBS.end, (state.value, error, now, now, job_id, _RUNNING))
        return updated == 1
