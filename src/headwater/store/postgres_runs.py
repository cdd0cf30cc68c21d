"""The run verbs of the PostgreSQL backend, mixed into `PostgresStore` (kept apart to keep each module
readable; the events, the pool and the retries are in postgres.py).

As for events, every verb is one statement on an autocommit connection, so one round trip and its
own transaction. A verb that touches several tables does it with data-modifying CTEs: they all
see one snapshot and commit together, and PostgreSQL runs each of them exactly once.

Concurrency comes from row locks, not from a single writer as in SQLite:
- claiming locks due items with `FOR UPDATE SKIP LOCKED`: processes claiming at once take
  disjoint items without waiting for each other, and a row re-checked after a concurrent claim
  (READ COMMITTED re-evaluates the WHERE on the newest version) no longer looks claimable;
- idempotency keys are claimed by an upsert, which serialises concurrent claims of one key on its
  row (the loser sees the winner's unexpired row and its run is Skipped);
- the lease guards compare `lease_owner` in the UPDATE/DELETE itself, so a stale owner's write
  matches no row.
A deadlock between two of these (e.g. a claim and a cancellation of the same run) aborts one
statement whole; `_run` retries it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from psycopg import AsyncConnection
from psycopg.abc import Params

from headwater.store import flow_programs, retention
from headwater.store.base import EventRecord
from headwater.store.flow_programs import Program, Rows
from headwater.store.flow_rows import QUEUE_FLOW_COLUMNS, queue_flow_values
from headwater.store.retention import Deleted
from headwater.store.run_rules import (
    ACTIVE_IN,
    DUPLICATE_REASON,
    PlannedRun,
    new_run_record,
    plan_runs,
    require_final,
)
from headwater.store.runs import NewRun, QueueItem, RunRecord, RunStatus, StepRecord
from headwater.types import Millis

T = TypeVar("T")
Connection = AsyncConnection[tuple[Any, ...]]

_QUEUED: Final = RunStatus.QUEUED.value
_SKIPPED: Final = RunStatus.SKIPPED.value
_RUNNING: Final = RunStatus.RUNNING.value
#: Larger than any epoch ms: "no bound" for a range comparison that must stay an index range.
_NO_BOUND: Final = 2**63 - 1

#: A run's columns, JSONB as text (never parsed here), then its event ids in their order.
_RUN_COLUMNS: Final = (
    "r.run_id, r.function_id, r.status, r.created_at, r.started_at, r.ended_at,"
    " r.output::text, r.error::text, r.reason,"
    " array(SELECT e.event_id FROM run_events AS e WHERE e.run_id = r.run_id ORDER BY e.position)"
)


def _create_runs_ctes(gate: str) -> str:
    """The CTEs that create a batch of runs; `gate` is a WHERE clause on the batch (empty, or
    the append's "only if it stored a new event").

    - `batch`: the runs, one row each, `ord` their input position.
    - `claimed`: claims the keys (one upsert; `plan_runs` removed in-batch duplicates, which an
      upsert may not touch twice). An existing row is taken over only if it expired by the new
      run's creation, or is already this run's (a retried create). Keys are claimed in key order
      so that concurrent batches lock them in one order and cannot deadlock.
    - `decided`: Queued if the run has no key or claimed it, else Skipped.
    - `inserted`: the runs whose id is new (a retried create leaves the stored run as it is).
    - `linked` / `queued`: event links, and an item for each new Queued run.
    """
    return f"""
batch AS MATERIALIZED (
    SELECT * FROM unnest(
        %(run_id)b::text[], %(function_id)b::text[], %(created_at)b::int8[],
        %(start_at)b::int8[], %(key)b::text[], %(expires_at)b::int8[],
        %(duplicate)b::bool[], %(item_id)b::text[],
        %(priority_ms)b::int8[], %(ckey1)b::text[], %(climit1)b::int4[], %(ckey2)b::text[],
        %(climit2)b::int4[], %(throttle_key)b::text[], %(throttle_limit)b::int4[],
        %(throttle_period_ms)b::int8[], %(throttle_burst)b::int4[], %(deadline)b::int8[]
    ) WITH ORDINALITY
      AS b(run_id, function_id, created_at, start_at, key, expires_at, duplicate, item_id,
           {QUEUE_FLOW_COLUMNS}, ord)
    {gate}
), claimed AS (
    INSERT INTO idempotency_keys AS k (function_id, key, run_id, created_at, expires_at)
    SELECT function_id, key, run_id, created_at, expires_at FROM batch
    WHERE key IS NOT NULL AND NOT duplicate
    ORDER BY function_id, key
    ON CONFLICT (function_id, key) DO UPDATE
    SET run_id = EXCLUDED.run_id, created_at = EXCLUDED.created_at,
        expires_at = EXCLUDED.expires_at
    WHERE k.run_id = EXCLUDED.run_id OR k.expires_at <= EXCLUDED.created_at
    RETURNING k.run_id
), decided AS MATERIALIZED (
    SELECT b.*,
        CASE WHEN NOT b.duplicate AND (b.key IS NULL OR b.run_id IN (SELECT run_id FROM claimed))
             THEN '{_QUEUED}' ELSE '{_SKIPPED}' END AS status
    FROM batch AS b
), inserted AS (
    INSERT INTO runs (run_id, function_id, status, created_at, ended_at, reason)
    SELECT run_id, function_id, status, created_at,
        CASE WHEN status = '{_SKIPPED}' THEN created_at END,
        CASE WHEN status = '{_SKIPPED}' THEN %(reason)s::text END
    FROM decided
    ORDER BY run_id
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id
), linked AS (
    INSERT INTO run_events (run_id, position, event_id)
    SELECT l.run_id, l.position, l.event_id
    FROM unnest(%(link_run_id)b::text[], %(link_position)b::int4[], %(link_event_id)b::text[])
      AS l(run_id, position, event_id)
    WHERE l.run_id IN (SELECT run_id FROM inserted)
), queued AS (
    INSERT INTO queue (item_id, run_id, due_at, attempt, {QUEUE_FLOW_COLUMNS})
    SELECT item_id, run_id, start_at, 0, {QUEUE_FLOW_COLUMNS} FROM decided
    WHERE status = '{_QUEUED}' AND run_id IN (SELECT run_id FROM inserted)
)"""


#: Per run of the batch, in input order: its status, and whether this statement created it.
#: Semi-joins (IN) rather than joins throughout: the planner cannot know that run ids are unique
#: within CTEs, and its row estimates for joins of them multiply until the statement looks costly
#: enough for JIT compilation, which then takes longer than the statement itself.
_CREATE_RUNS: Final = f"""
WITH {_create_runs_ctes("")}
SELECT status, run_id IN (SELECT run_id FROM inserted) FROM decided ORDER BY ord
"""


def append_with_runs_sql(insert_events: str) -> str:
    """One statement storing events and the runs they start: the runs only if the insert stored at
    least one new event (a seeded retry of a send must not start its runs again). Returns the
    number of new events."""
    return f"""
WITH new_events AS ({insert_events} RETURNING 1),
{_create_runs_ctes("WHERE EXISTS (SELECT 1 FROM new_events)")}
SELECT count(*) FROM new_events
"""


def run_batch_params(planned: Sequence[PlannedRun]) -> dict[str, Any]:
    """The arrays (binary `%b` parameters) of `_create_runs_ctes` for a planned batch."""
    runs = [plan.run for plan in planned]
    flow_columns = [column.strip() for column in QUEUE_FLOW_COLUMNS.split(",")]
    flow_rows = [queue_flow_values(run.flow) for run in runs]
    return {
        **{column: [row[i] for row in flow_rows] for i, column in enumerate(flow_columns)},
        "run_id": [run.run_id for run in runs],
        "function_id": [run.function_id for run in runs],
        "created_at": [run.created_at for run in runs],
        "start_at": [run.start_at for run in runs],
        "key": [run.idempotency_key for run in runs],
        "expires_at": [run.idempotency_expires_at for run in runs],
        "duplicate": [plan.duplicate_in_batch for plan in planned],
        "item_id": [plan.item_id for plan in planned],
        "reason": DUPLICATE_REASON,
        "link_run_id": [run.run_id for run in runs for _ in run.event_ids],
        "link_position": [position for run in runs for position in range(len(run.event_ids))],
        "link_event_id": [event_id for run in runs for event_id in run.event_ids],
    }


#: The key of the advisory lock that serialises flow-controlled decisions across processes:
#: claims (concurrency counts and throttles must see every other claim) and the creation of runs
#: under rate limits, singletons and groups. b"HWFLOW01" as a signed 64-bit integer.
FLOW_LOCK_KEY: Final = int.from_bytes(b"HWFLOW01", "big", signed=True)


async def run_program(connection: Connection, program: Program[T]) -> T:
    """Run a flow program (flow_programs.py) on `connection`, inside the caller's transaction."""
    try:
        statement = next(program)
        while True:
            text = statement.text.replace("?", "%s")
            rows: Rows = []
            if statement.many:
                async with connection.cursor() as cursor:
                    await cursor.executemany(text, statement.params)
            else:
                cursor = await connection.execute(text, statement.params)
                if cursor.description is not None:
                    rows = await cursor.fetchall()
            statement = program.send(rows)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def run_locked(connection: Connection, program: Program[T]) -> T:
    """Run a flow program in its own transaction, holding the flow lock."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (FLOW_LOCK_KEY,))
        return await run_program(connection, program)


#: The earliest time an item becomes claimable: the first unleased due time, or a leased item's
#: lease end (an expired one is in the past: due now). Only leased items due no later than the
#: first unleased one can be earlier, so both parts are range scans of `queue_by_due_at` over the
#: front of the queue (the in-flight items), not scans of the whole queue.
#: The BETWEEN's constant lower bound is for the planner: it cannot know the subquery's bound and
#: guesses a third of the table for `due_at <= ?` (so a sequential scan), but 0.5% for a range
#: with an unknown end, which makes it pick the index.
_NEXT_DUE_AT: Final = f"""
WITH free AS (
    SELECT due_at FROM queue WHERE lease_until IS NULL ORDER BY due_at, item_id LIMIT 1
)
SELECT LEAST(
    (SELECT due_at FROM free),
    (SELECT min(GREATEST(due_at, lease_until)) FROM queue
     WHERE lease_until IS NOT NULL
       AND due_at BETWEEN {-_NO_BOUND - 1} AND coalesce((SELECT due_at FROM free), {_NO_BOUND})))
"""

#: `items`: the run's queue items, locked first. A claim locks an item and then its run, so
#: locking in that same order here keeps a finish or cancellation racing a claim of the same run
#: from deadlocking with it (the later one waits, then sees the other's outcome).
#: `allowed`: the caller may finish the run: it cancels (no item) or holds that item's lease. An
#: aggregate over `items`, so that the locks are taken even when cancelling.
#: Items of a run already final are deleted too: it has nothing left to run.
_FINISH_RUN: Final = f"""
WITH items AS MATERIALIZED (
    SELECT item_id, lease_owner FROM queue WHERE run_id = %(run_id)s FOR UPDATE
), allowed AS MATERIALIZED (
    SELECT %(item_id)s::text IS NULL
        OR coalesce(bool_or(item_id = %(item_id)s AND lease_owner = %(owner)s), FALSE) AS ok
    FROM items
), finished AS (
    UPDATE runs SET status = %(status)s, ended_at = %(ended_at)s, output = %(output)s::jsonb,
        error = %(error)s::jsonb, reason = %(reason)s
    WHERE run_id = %(run_id)s AND status IN {ACTIVE_IN} AND (SELECT ok FROM allowed)
    RETURNING run_id
), cleared AS (
    DELETE FROM queue WHERE run_id = %(run_id)s AND (SELECT ok FROM allowed)
)
SELECT count(*) FROM finished
"""


class _Plumbing(Protocol):
    """What the mixin needs from `PostgresStore`."""

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T: ...

    async def _notify_queue(self) -> None: ...

    async def _fetch(self, sql: str, params: Params) -> list[tuple[Any, ...]]: ...

    async def _rowcount(self, sql: str, params: Params) -> int: ...


class PostgresRunVerbs:
    """The `Store` verbs for runs, steps and the queue (see base.py for their contracts)."""

    async def create_runs(self: _Plumbing, runs: Sequence[NewRun]) -> list[RunRecord]:
        """One statement for the whole batch, unless some run's flow control needs state (rate
        limit, singleton, debounce, batching): then one transaction holding the flow lock. A run
        whose id is already stored (a retried create) is left as it is and its stored record
        returned."""
        if not runs:
            return []
        planned = plan_runs(runs)
        if any(plan.run.flow.needs_creation_state for plan in planned):

            async def create_locked(connection: Connection) -> list[RunRecord]:
                async with connection.transaction():
                    await connection.execute("SELECT pg_advisory_xact_lock(%s)", (FLOW_LOCK_KEY,))
                    return await create_with_flow(connection, planned)

            records = await self._run(create_locked)
        else:
            records = await self._run(lambda connection: create_plain_runs(connection, planned))
        await self._notify_queue()  # other processes may run these runs
        return records

    async def get_run(self: _Plumbing, run_id: str) -> RunRecord | None:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs AS r WHERE r.run_id = %s", (run_id,)
        )
        return _run_record(rows[0]) if rows else None

    async def list_runs_for_event(self: _Plumbing, event_internal_id: str) -> list[RunRecord]:
        # IN, not a join: a run listing the event twice is still one run.
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs AS r WHERE r.run_id IN"
            " (SELECT run_id FROM run_events WHERE event_id = %s)"
            " ORDER BY r.created_at, r.run_id",
            (event_internal_id,),
        )
        return [_run_record(row) for row in rows]

    async def list_steps(self: _Plumbing, run_id: str) -> list[StepRecord]:
        rows = await self._fetch(
            "SELECT run_id, step_id, name, op, memo::text, started_at, ended_at, attempts"
            " FROM run_steps WHERE run_id = %s ORDER BY seq",
            (run_id,),
        )
        return [
            StepRecord(row[0], row[1], row[2], row[3], row[4].encode(), row[5], row[6], row[7])
            for row in rows
        ]

    async def claim_due(
        self: _Plumbing, owner: str, now: Millis, lease_ms: int, limit: int
    ) -> list[QueueItem]:
        if limit <= 0:  # PostgreSQL refuses a negative LIMIT
            return []
        lease_until = now + lease_ms

        async def claim(connection: Connection) -> list[QueueItem]:
            return await run_locked(connection, flow_programs.claim(owner, now, lease_until, limit))

        return await self._run(claim)

    async def delete_expired(self: _Plumbing, cutoff: Millis, limit: int) -> Deleted:
        async def delete(connection: Connection) -> Deleted:
            async with connection.transaction():
                return await run_program(connection, retention.delete_expired(cutoff, limit))

        return await self._run(delete)

    async def prune_state(self: _Plumbing, before: Millis) -> None:
        await self._run(lambda connection: run_locked(connection, flow_programs.prune(before)))

    async def next_due_at(self: _Plumbing) -> Millis | None:
        rows = await self._fetch(_NEXT_DUE_AT, ())
        value = rows[0][0]
        return None if value is None else int(value)

    async def record_step(self: _Plumbing, step: StepRecord) -> bool:
        inserted = await self._rowcount(
            "INSERT INTO run_steps"
            " (run_id, step_id, name, op, memo, started_at, ended_at, attempts)"
            " VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
            " ON CONFLICT (run_id, step_id) DO NOTHING",
            (
                step.run_id,
                step.step_id,
                step.name,
                step.op,
                step.memo_json.decode(),
                step.started_at,
                step.ended_at,
                step.attempts,
            ),
        )
        return inserted == 1

    async def reschedule(
        self: _Plumbing,
        item_id: str,
        owner: str,
        due_at: Millis,
        attempt: int,
        *,
        deadline: Millis | None = None,
    ) -> bool:
        updated = await self._rowcount(
            "UPDATE queue SET due_at = %s, attempt = %s, deadline = %s, lease_owner = NULL,"
            " lease_until = NULL WHERE item_id = %s AND lease_owner = %s",
            (due_at, attempt, deadline, item_id, owner),
        )
        if updated:
            await self._notify_queue()  # a concurrency slot is free again
        return updated == 1

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
        params = {
            "run_id": run_id,
            "item_id": item_id,
            "owner": owner,
            "status": status.value,
            "ended_at": ended_at,
            "output": output_json.decode() if output_json is not None else None,
            "error": error_json.decode() if error_json is not None else None,
            "reason": reason,
        }
        if announce:
            planned = plan_runs(announce_runs) if announce_runs else []

            async def finish_announced(connection: Connection) -> bool:
                return await finish_and_announce(connection, params, announce, planned)

            finished = await self._run(finish_announced)
        else:
            rows = await self._fetch(_FINISH_RUN, params)
            finished = bool(rows[0][0])
        if finished:
            await self._notify_queue()  # a concurrency slot is free again
        return finished

    async def extend_lease(self: _Plumbing, item_id: str, owner: str, lease_until: Millis) -> bool:
        updated = await self._rowcount(
            "UPDATE queue SET lease_until = %s WHERE item_id = %s AND lease_owner = %s",
            (lease_until, item_id, owner),
        )
        return updated == 1

    async def claim_cron_tick(self: _Plumbing, function_id: str, tick_at: Millis) -> bool:
        inserted = await self._rowcount(
            "INSERT INTO cron_ticks (function_id, tick_at) VALUES (%s, %s)"
            " ON CONFLICT (function_id, tick_at) DO NOTHING",
            (function_id, tick_at),
        )
        return inserted == 1

    async def last_cron_tick(self: _Plumbing, function_id: str) -> Millis | None:
        # max() over the primary key's range: one backward index seek.
        rows = await self._fetch(
            "SELECT max(tick_at) FROM cron_ticks WHERE function_id = %s", (function_id,)
        )
        value = rows[0][0]
        return None if value is None else int(value)


def _run_record(row: Sequence[Any]) -> RunRecord:
    """A run from `_RUN_COLUMNS`."""
    return RunRecord(
        run_id=row[0],
        function_id=row[1],
        status=RunStatus(row[2]),
        event_ids=tuple(row[9]),
        created_at=row[3],
        started_at=row[4],
        ended_at=row[5],
        output_json=row[6].encode() if row[6] is not None else None,
        error_json=row[7].encode() if row[7] is not None else None,
        reason=row[8],
    )


async def create_plain_runs(
    connection: Connection, planned: Sequence[PlannedRun]
) -> list[RunRecord]:
    """Create runs without stateful flow control in one statement (`_CREATE_RUNS`)."""
    cursor = await connection.execute(_CREATE_RUNS, run_batch_params(planned))
    rows = await cursor.fetchall()
    decided = list(zip(planned, rows, strict=True))
    # Runs already stored (a retried create): read what the first attempt stored. Rare, so a
    # second statement then rather than a costlier first one always.
    retried = [plan.run.run_id for plan, (_, created) in decided if not created]
    stored = await _select_runs(connection, retried) if retried else {}
    return [
        new_run_record(plan.run, RunStatus(status)) if created else stored[plan.run.run_id]
        for plan, (status, created) in decided
    ]


async def create_with_flow(
    connection: Connection, planned: Sequence[PlannedRun]
) -> list[RunRecord]:
    """Create a batch in which some runs need flow state, inside the caller's transaction that
    holds the flow lock: the others in one statement, then these one by one, in input order (a
    rate limit or a group sees the earlier runs of the batch)."""
    plain = [plan for plan in planned if not plan.run.flow.needs_creation_state]
    records = dict(
        zip(
            (plan.run.run_id for plan in plain),
            await create_plain_runs(connection, plain) if plain else [],
            strict=True,
        )
    )
    read_back: dict[str, str] = {}
    for plan in planned:
        if not plan.run.flow.needs_creation_state:
            continue
        created = await run_program(connection, flow_programs.create_flow_run(plan))
        if isinstance(created, RunRecord):
            records[plan.run.run_id] = created
        else:
            read_back[plan.run.run_id] = created
    if read_back:
        stored = await _select_runs(connection, list(set(read_back.values())))
        records.update({run_id: stored[other] for run_id, other in read_back.items()})
    return [records[plan.run.run_id] for plan in planned]


async def append_with_flow_runs(
    connection: Connection, insert_events: str, event_params: Params, planned: Sequence[PlannedRun]
) -> int:
    """Store events and the runs they start in one transaction holding the flow lock; the runs
    only if at least one event was new (a seeded retry starts no runs again)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (FLOW_LOCK_KEY,))
        cursor = await connection.execute(insert_events, event_params)
        new = max(cursor.rowcount, 0)
        if new:
            await create_with_flow(connection, planned)
        return new


async def _select_runs(connection: Connection, run_ids: list[str]) -> dict[str, RunRecord]:
    cursor = await connection.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs AS r WHERE r.run_id = ANY(%b::text[])", (run_ids,)
    )
    return {row[0]: _run_record(row) for row in await cursor.fetchall()}


async def finish_and_announce(
    connection: Connection,
    finish_params: Params,
    announce: Sequence[EventRecord],
    planned: Sequence[PlannedRun],
) -> bool:
    """`_FINISH_RUN` and, if it finished the run, the announcing events and their runs: one
    transaction. Runs that need flow state take the flow lock first (the order claims take it)."""
    # Imported here: postgres.py imports this module (it mixes these verbs in).
    from headwater.store.postgres import insert_events_sql_params

    async with connection.transaction():
        if any(plan.run.flow.needs_creation_state for plan in planned):
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (FLOW_LOCK_KEY,))
        cursor = await connection.execute(_FINISH_RUN, finish_params)
        row = await cursor.fetchone()
        finished = row is not None and bool(row[0])
        if finished:
            sql, params = insert_events_sql_params(announce)
            inserted = await connection.execute(sql, params)
            if inserted.rowcount and planned:
                await create_with_flow(connection, planned)
        return finished
