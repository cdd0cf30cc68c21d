"""The PostgreSQL backend: for deployments where several server processes share one database.

Every verb is a single SQL statement run on an autocommit connection from a pool. PostgreSQL runs a
lone statement as its own transaction, so each verb is atomic (all rows of an append or none) and
costs one round trip: no BEGIN/COMMIT exchanges. Only `open()` (the migrations) needs an explicit
transaction.

Batches travel as arrays (`unnest(%b::text[], ...)`) in binary format: one statement and one round
trip per batch whatever its size. Binary matters: psycopg builds text array literals in Python, about
ten times slower than binary arrays for a 5,000-row batch. Appends without runs that arrive while
others are being written share the next statement (group commit, see `_AppendBatcher`): a statement
costs the event loop's thread far more than its rows do.

`data`/`meta` are JSONB. They are written from the record's JSON bytes (decoded to `str` only, never
parsed in Python) and read back as JSONB's text form. JSONB keeps the JSON value, not its spelling:
key order and whitespace may differ from the bytes that were stored, but `orjson.loads` of both is
equal. JSONB also refuses `\\u0000` in strings (and TEXT refuses NUL characters), which SQLite accepts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection
from psycopg.abc import Params
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from headwater.crypto import SealedUser
from headwater.errors import ConfigurationError, MigrationError, StoreError
from headwater.store.base import EventQuery, EventRecord
from headwater.store.migrations import load_migrations
from headwater.store.postgres_apps import PostgresAppVerbs
from headwater.store.postgres_cancellations import PostgresCancellationVerbs
from headwater.store.postgres_notify import CHANNEL, QueueListener
from headwater.store.postgres_queries import PostgresQueryVerbs
from headwater.store.postgres_runs import (
    PostgresRunVerbs,
    append_with_flow_runs,
    append_with_runs_sql,
    run_batch_params,
)
from headwater.store.postgres_waits import PostgresWaitVerbs
from headwater.store.run_rules import plan_runs
from headwater.store.runs import NewRun

T = TypeVar("T")

Connection = AsyncConnection[TupleRow]

#: The key of the advisory lock that serialises migrations across processes: b"HEADWATR" as a
#: big-endian int64, so it is unlikely to collide with another application's lock on the database.
_MIGRATION_LOCK_KEY: Final = 0x4845414457415452

_DEFAULT_POOL_MIN: Final = 1
_DEFAULT_POOL_MAX: Final = 10
#: Seconds `open()` waits for the first connection, and a verb waits for a free one.
_DEFAULT_POOL_TIMEOUT: Final = 30.0
#: Query parameters of the URL that configure the pool; libpq would refuse them, so they are removed
#: from the connection string.
_POOL_PARAMS: Final = frozenset({"pool_min", "pool_max", "pool_timeout"})

#: A deadlock or a serialisation failure aborts the whole statement, so running it again is exact.
#: Appends lock rows in internal id order and cannot deadlock each other, but an erasure and a reseal
#: touching the same rows in different orders could.
_RETRYABLE: Final = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_ATTEMPTS: Final = 3

_EVENT_COLUMNS: Final = (
    "internal_id, id, name, data, user_key_id, user_ciphertext, user_blind_index, user_erased,"
    " ts, v, meta, received_at"
)
#: JSONB comes back as text (then bytes), not as Python objects: nothing is parsed on reads.
_SELECT_EVENT: Final = (
    "SELECT internal_id, id, name, data::text, user_key_id, user_ciphertext, user_blind_index,"
    " user_erased, ts, v, meta::text, received_at FROM events"
)
#: `%b`: every array is sent in binary format. JSON travels as text[] and is cast row by row, so
#: PostgreSQL parses each document once, server side.
#: Named parameters (`e_*`): the statement is also the first CTE of an append that starts runs.
_INSERT_EVENTS: Final = (
    f"INSERT INTO events ({_EVENT_COLUMNS})"
    " SELECT internal_id, id, name, data::jsonb, user_key_id, user_ciphertext, user_blind_index,"
    " user_erased, ts, v, meta::jsonb, received_at"
    " FROM unnest(%(e_internal_id)b::text[], %(e_id)b::text[], %(e_name)b::text[],"
    " %(e_data)b::text[], %(e_user_key_id)b::text[], %(e_user_ciphertext)b::bytea[],"
    " %(e_user_blind_index)b::bytea[], %(e_user_erased)b::bool[], %(e_ts)b::int8[],"
    " %(e_v)b::text[], %(e_meta)b::text[], %(e_received_at)b::int8[])"
    " AS batch(internal_id, id, name, data, user_key_id, user_ciphertext, user_blind_index,"
    " user_erased, ts, v, meta, received_at)"
    " ON CONFLICT (internal_id) DO NOTHING"
)
_EVENT_PARAMS: Final = tuple(f"e_{column.strip()}" for column in _EVENT_COLUMNS.split(","))
_INSERT_EVENTS_RETURNING: Final = f"{_INSERT_EVENTS} RETURNING internal_id"
#: Appends arriving while earlier ones are being written are merged into one statement of at most
#: this many rows (a bigger append is written alone), by at most this many statements at a time.
_MAX_MERGED_ROWS: Final = 5_000
_MAX_APPEND_WRITERS: Final = 2
_APPEND_WITH_RUNS: Final = append_with_runs_sql(_INSERT_EVENTS)
_RESEAL_USERS: Final = (
    "UPDATE events AS e SET user_key_id = r.key_id, user_ciphertext = r.ciphertext,"
    " user_blind_index = r.blind_index"
    " FROM unnest(%b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::text[])"
    " AS r(internal_id, key_id, ciphertext, blind_index, old_key_id)"
    " WHERE e.internal_id = r.internal_id AND e.user_key_id = r.old_key_id"
)


def parse_postgres_url(url: str) -> tuple[str, dict[str, str]]:
    """Split `url` into the conninfo for libpq and the pool options (`pool_min`, `pool_max`,
    `pool_timeout`). Every other query parameter is kept exactly as written (still
    percent-encoded), so options such as `options=-csearch_path%3Dx` or `sslmode` reach libpq."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"postgres", "postgresql"}:
        raise ConfigurationError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    kept: list[str] = []
    pool_options: dict[str, str] = {}
    for piece in parts.query.split("&") if parts.query else []:
        key, _, value = piece.partition("=")
        if unquote(key) in _POOL_PARAMS:
            pool_options[unquote(key)] = unquote(value)
        else:
            kept.append(piece)
    conninfo = urlunsplit(parts._replace(query="&".join(kept)))
    return conninfo, pool_options


def redact_url(url: str) -> str:
    """`url` without its password (in the user info or a `password=` parameter), for display."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
    pieces = parts.query.split("&") if parts.query else []
    query = "&".join(
        "password=***" if unquote(piece.partition("=")[0]) == "password" else piece
        for piece in pieces
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _pool_settings(options: dict[str, str]) -> tuple[int, int, float]:
    try:
        pool_max = int(options.get("pool_max", _DEFAULT_POOL_MAX))
        pool_min = int(options.get("pool_min", min(_DEFAULT_POOL_MIN, pool_max)))
        timeout = float(options.get("pool_timeout", _DEFAULT_POOL_TIMEOUT))
    except ValueError as exc:
        raise ConfigurationError(f"bad pool option in the PostgreSQL URL: {exc}") from None
    if pool_max < 1 or not 0 <= pool_min <= pool_max:
        raise ConfigurationError(
            "the PostgreSQL URL needs 0 <= pool_min <= pool_max and pool_max >= 1"
        )
    if timeout <= 0:
        raise ConfigurationError("pool_timeout must be a positive number of seconds")
    return pool_min, pool_max, timeout


class PostgresStore(
    PostgresRunVerbs,
    PostgresWaitVerbs,
    PostgresAppVerbs,
    PostgresQueryVerbs,
    PostgresCancellationVerbs,
):
    """`Store` on a PostgreSQL database (see the module docstring). The run verbs come from
    `PostgresRunVerbs` (postgres_runs.py) and use the same `_fetch`/`_rowcount`.

    URL: `postgresql://user:password@host:5432/dbname?pool_max=10`; the optional `pool_min`
    (default 1), `pool_max` (default 10) and `pool_timeout` (seconds, default 30) size the pool, every
    other parameter is passed to libpq.
    """

    def __init__(self, url: str) -> None:
        self._conninfo, options = parse_postgres_url(url)
        self._pool_min, self._pool_max, self._pool_timeout = _pool_settings(options)
        self.url_for_display = redact_url(url)
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._appends = _AppendBatcher(self)
        self._listeners: list[QueueListener] = []

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise StoreError("the PostgreSQL store is already open")
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._conninfo,
            connection_class=AsyncConnection,
            kwargs={"autocommit": True},
            min_size=self._pool_min,
            max_size=self._pool_max,
            timeout=self._pool_timeout,
            name="headwater",
            open=False,
        )
        try:
            try:
                await pool.open(wait=True, timeout=self._pool_timeout)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to {self.url_for_display}: {exc}") from exc
            await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    def watch_queue(self, wake: Callable[[], None]) -> None:
        listener = QueueListener(self._conninfo, wake)
        listener.start()
        self._listeners.append(listener)

    async def _notify_queue(self) -> None:
        await self._rowcount(f"NOTIFY {CHANNEL}", ())

    async def close(self) -> None:
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        await self._appends.drain()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _migrate(self, pool: AsyncConnectionPool[Connection]) -> None:
        """Apply the pending migrations in one transaction. The advisory lock makes processes that
        start together on one database take turns: the first applies, the others then find nothing
        left to do. It is released with the transaction."""
        try:
            async with pool.connection() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
                )
                cursor = await connection.execute("SELECT version FROM schema_migrations")
                applied = {row[0] for row in await cursor.fetchall()}
                for migration in load_migrations("postgres"):
                    if migration.version in applied:
                        continue
                    try:
                        # No parameters: psycopg sends the file as a simple query, so a migration
                        # may hold several statements and `%` needs no escaping.
                        await connection.execute(migration.sql)
                    except psycopg.Error as exc:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                        ) from exc
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, int(time.time() * 1000)),
                    )
        except psycopg.Error as exc:
            raise MigrationError(f"cannot migrate {self.url_for_display}: {exc}") from exc

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `work` (one statement) on a pooled connection; database errors become StoreError.

        Two failures are retried. A deadlock or serialisation failure rolled the statement back,
        so running it again is exact. A connection found dead (the server restarted, a proxy
        closed it while idle) is dropped by the pool when returned, so each retry draws another;
        after a restart up to `pool_max` idle ones may be dead. (Checking every connection on
        checkout instead would add a round trip to every verb.) A connection lost while the
        statement ran leaves its outcome unknown, as for any client; retrying is still safe
        because every verb is idempotent in effect: an append then counts only the rows that were
        still new, an erasure or a reseal finds its rows already done.
        """
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        conflicts = 0
        lost_connections = 0
        while True:
            connection_lost = False
            try:
                async with self._pool.connection() as connection:
                    try:
                        return await work(connection)
                    except psycopg.OperationalError:
                        connection_lost = connection.broken
                        raise
            except _RETRYABLE as exc:
                conflicts += 1
                if conflicts >= _ATTEMPTS:
                    raise StoreError(f"PostgreSQL: {exc} (after {conflicts} attempts)") from exc
                await asyncio.sleep(0.01 * conflicts)
            except psycopg.Error as exc:
                if connection_lost and lost_connections < self._pool_max:
                    lost_connections += 1
                    continue
                raise StoreError(f"PostgreSQL: {exc}") from exc

    async def _fetch(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        async def fetch(connection: Connection) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()

        return await self._run(fetch)

    async def _rowcount(self, sql: str, params: Params) -> int:
        async def execute(connection: Connection) -> int:
            cursor = await connection.execute(sql, params)
            return max(cursor.rowcount, 0)

        return await self._run(execute)

    # -- events -------------------------------------------------------------------------------

    async def append_events(
        self, events: Sequence[EventRecord], runs: Sequence[NewRun] = ()
    ) -> int:
        """With `runs`, one statement stores the events and then (only if at least one event was
        new) the runs, as `create_runs` does; see `append_with_runs_sql`."""
        if not events:
            return 0
        planned = plan_runs(runs) if runs else []
        # Rows are inserted (and their index entries locked) in internal id order, so two appends
        # sharing ids wait for each other instead of deadlocking. The sort is stable: of ids
        # repeated within one batch the first is stored, as in SQLite.
        if not planned:
            return await self._appends.append(events)
        params = _event_params(events)
        if any(plan.run.flow.needs_creation_state for plan in planned):
            return await self._run(
                lambda connection: append_with_flow_runs(
                    connection, _INSERT_EVENTS, params, planned
                )
            )
        rows = await self._fetch(_APPEND_WITH_RUNS, params | run_batch_params(planned))
        return int(rows[0][0])

    async def _insert_events(self, events: Sequence[EventRecord]) -> int:
        """One statement appending `events` (no runs); how many were new."""
        return await self._rowcount(_INSERT_EVENTS, _event_params(events))

    async def _insert_events_returning(self, events: Sequence[EventRecord]) -> set[str]:
        """One statement appending `events` (no runs); the internal ids that were new."""
        rows = await self._fetch(_INSERT_EVENTS_RETURNING, _event_params(events))
        return {row[0] for row in rows}

    async def get_event(self, internal_id: str) -> EventRecord | None:
        rows = await self._fetch(f"{_SELECT_EVENT} WHERE internal_id = %s", (internal_id,))
        return _event_record(rows[0]) if rows else None

    async def list_events(self, query: EventQuery) -> list[EventRecord]:
        where, params = query.where("%s")
        # SQLite reads a negative LIMIT as "no limit"; PostgreSQL refuses one, LIMIT NULL is "all".
        params.append(query.limit if query.limit >= 0 else None)
        rows = await self._fetch(
            f"{_SELECT_EVENT}{where} ORDER BY internal_id DESC LIMIT %s", params
        )
        return [_event_record(row) for row in rows]

    async def count_events(self) -> int:
        rows = await self._fetch("SELECT count(*) FROM events", ())
        return int(rows[0][0])

    async def erase_users(self, blind_index: bytes) -> int:
        return await self._rowcount(
            "UPDATE events SET user_key_id = NULL, user_ciphertext = NULL,"
            " user_blind_index = NULL, user_erased = TRUE WHERE user_blind_index = %s",
            (blind_index,),
        )

    async def events_sealed_with_other_keys(
        self, key_id: str, after_internal_id: str, limit: int
    ) -> list[tuple[str, SealedUser]]:
        rows = await self._fetch(
            "SELECT internal_id, user_key_id, user_ciphertext, user_blind_index FROM events"
            " WHERE internal_id > %s AND user_key_id IS NOT NULL AND user_key_id <> %s"
            " ORDER BY internal_id LIMIT %s",
            (after_internal_id, key_id, limit if limit >= 0 else None),
        )
        return [(row[0], SealedUser(row[1], row[2], row[3])) for row in rows]

    async def count_events_sealed_with_other_keys(self, key_id: str) -> int:
        rows = await self._fetch(
            "SELECT count(*) FROM events WHERE user_key_id IS NOT NULL AND user_key_id <> %s",
            (key_id,),
        )
        return int(rows[0][0])

    async def reseal_users(self, rows: Sequence[tuple[str, SealedUser, str]]) -> int:
        """One UPDATE joined to the batch. An internal id is expected once per call (a key
        rotation reads distinct rows); if repeated, one of its entries applies, not each in turn."""
        if not rows:
            return 0
        return await self._rowcount(
            _RESEAL_USERS,
            (
                [internal_id for internal_id, _, _ in rows],
                [sealed.key_id for _, sealed, _ in rows],
                [sealed.ciphertext for _, sealed, _ in rows],
                [sealed.blind_index for _, sealed, _ in rows],
                [old_key_id for _, _, old_key_id in rows],
            ),
        )


def insert_events_sql_params(events: Sequence[EventRecord]) -> tuple[str, dict[str, Any]]:
    """The statement (and its parameters) that appends `events`, keeping those already stored."""
    return _INSERT_EVENTS, _event_params(events)


def _event_params(events: Sequence[EventRecord]) -> dict[str, Any]:
    """The `e_*` parameters of `_INSERT_EVENTS`: one array per column, rows in internal id order.

    Rows are inserted (and their index entries locked) in internal id order, so two appends sharing
    ids wait for each other instead of deadlocking. The sort is stable: of ids repeated within one
    batch the first is stored, as in SQLite.
    """
    columns: list[list[Any]] = [[] for _ in range(12)]
    (
        internal_ids,
        ids,
        names,
        data,
        key_ids,
        ciphertexts,
        blind_indexes,
        erased,
        timestamps,
        versions,
        metas,
        received,
    ) = columns
    for event in sorted(events, key=attrgetter("internal_id")):
        sealed = event.user
        internal_ids.append(event.internal_id)
        ids.append(event.id)
        names.append(event.name)
        data.append(event.data_json.decode())
        key_ids.append(sealed.key_id if sealed else None)
        ciphertexts.append(sealed.ciphertext if sealed else None)
        blind_indexes.append(sealed.blind_index if sealed else None)
        erased.append(event.user_erased)
        timestamps.append(event.ts)
        versions.append(event.v)
        metas.append(event.meta_json.decode() if event.meta_json is not None else None)
        received.append(event.received_at)
    return dict(zip(_EVENT_PARAMS, columns, strict=True))


@dataclass(slots=True)
class _PendingAppend:
    events: Sequence[EventRecord]
    future: asyncio.Future[int]


class _AppendBatcher:
    """Group commit for plain appends (no runs), the Event API's commonest write.

    Each statement costs the event loop's thread far more in psycopg (building the query, adapting
    twelve arrays, reading the result) than its rows do, so appends that arrive while earlier ones
    are being written wait and go together in the next statement: an `INSERT ... unnest` of all
    their rows, `RETURNING` the ids that were new, from which each caller gets its own count (an id
    sent twice counts for the first sender, as its row is the one stored). One statement is one
    transaction, so the appends it carries are stored all together or not at all; if it fails
    (a bad row, say), each of them is written again alone, so a bad append fails only its caller.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._pending: list[_PendingAppend] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def append(self, events: Sequence[EventRecord]) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_PendingAppend(events, future))
        if len(self._writers) < _MAX_APPEND_WRITERS:
            writer = asyncio.create_task(self._write_pending())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await future

    async def drain(self) -> None:
        """Wait until every append handed over so far is written."""
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)

    def _take(self) -> list[_PendingAppend]:
        """The next appends to write together: whatever waits, up to `_MAX_MERGED_ROWS` rows (or
        the first append alone if it is bigger); appends whose callers gave up are dropped."""
        taken: list[_PendingAppend] = []
        rows = 0
        while self._pending:
            entry = self._pending[0]
            if taken and rows + len(entry.events) > _MAX_MERGED_ROWS:
                break
            del self._pending[0]
            if entry.future.done():  # cancelled before it was sent: not written
                continue
            taken.append(entry)
            rows += len(entry.events)
        return taken

    async def _write_pending(self) -> None:
        taken: list[_PendingAppend] = []
        try:
            while self._pending:
                taken = self._take()
                if taken:
                    await self._write(taken)
                taken = []
        except BaseException:
            # Cancelled (the loop is shutting down): no caller may wait forever.
            if len(self._writers) <= 1:
                taken += self._pending
                self._pending.clear()
            for entry in taken:
                if not entry.future.done():
                    entry.future.set_exception(StoreError("PostgreSQL: the append was cancelled"))
            raise

    async def _write(self, taken: list[_PendingAppend]) -> None:
        if len(taken) == 1:
            await self._write_alone(taken[0])
            return
        try:
            new_ids = await self._store._insert_events_returning(
                [event for entry in taken for event in entry.events]
            )
        except Exception:
            # Which append was at fault is unknown (and nothing was stored): each alone.
            await asyncio.gather(*(self._write_alone(entry) for entry in taken))
            return
        for entry in taken:
            new = 0
            for event in entry.events:
                if event.internal_id in new_ids:
                    new_ids.discard(event.internal_id)
                    new += 1
            if not entry.future.done():
                entry.future.set_result(new)

    async def _write_alone(self, entry: _PendingAppend) -> None:
        try:
            new = await self._store._insert_events(entry.events)
        except Exception as exc:
            if not entry.future.done():
                entry.future.set_exception(exc)
            return
        if not entry.future.done():
            entry.future.set_result(new)


def _event_record(row: Sequence[Any]) -> EventRecord:
    sealed = SealedUser(row[4], row[5], row[6]) if row[4] is not None else None
    return EventRecord(
        internal_id=row[0],
        id=row[1],
        name=row[2],
        data_json=row[3].encode(),
        user=sealed,
        user_erased=bool(row[7]),
        ts=row[8],
        v=row[9],
        meta_json=row[10].encode() if row[10] is not None else None,
        received_at=row[11],
    )
