"""The SQLite backend: the embedded default.

Durability without one fsync per request: every write is a job handed to one writer thread, which
takes all the jobs waiting at that moment, runs them in one transaction (each in a savepoint, so one
failing job does not undo the others) and commits once (group commit). Each caller is answered only
after that commit, with `synchronous=FULL` by default, so an acknowledged write survives power loss.
Reads run on their own connections in a small thread pool; WAL lets them proceed during writes.

Plain event appends (no runs), the commonest jobs by far, that follow each other in a batch are
merged into one multi-row INSERT without savepoints; if the merged INSERT fails or meets an id
already stored, it is undone and those jobs run one by one as any other job (see `_commit_batch`).
A batch of nothing but a few such appends is one INSERT statement in autocommit mode: its own
transaction, committed (and synced) by that one statement. Fewer statements matter because each
one releases the GIL and must win it back from the busy event loop's thread.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from headwater.crypto import SealedUser
from headwater.errors import ConfigurationError, StoreError
from headwater.store.base import EventQuery, EventRecord
from headwater.store.migrations import load_migrations
from headwater.store.run_rules import PlannedRun, plan_runs
from headwater.store.runs import NewRun
from headwater.store.sqlite_apps import SQLiteAppVerbs
from headwater.store.sqlite_cancellations import SQLiteCancellationVerbs
from headwater.store.sqlite_queries import SQLiteQueryVerbs
from headwater.store.sqlite_runs import SQLiteRunVerbs, create_planned_runs
from headwater.store.sqlite_waits import SQLiteWaitVerbs

T = TypeVar("T")

_BUSY_TIMEOUT_MS: Final = 30_000
#: Upper bound of jobs in one group commit: bounds the latency a huge backlog adds to one commit.
_MAX_JOBS_PER_COMMIT: Final = 512
_READ_THREADS: Final = 4
_SYNCHRONOUS_MODES: Final = {"OFF", "NORMAL", "FULL", "EXTRA"}

_EVENT_COLUMNS: Final = (
    "internal_id, id, name, data, user_key_id, user_ciphertext, user_blind_index, user_erased,"
    " ts, v, meta, received_at"
)
_EVENT_WIDTH: Final = 12
#: Rows per multi-row INSERT statement at most. Statements hold a power of two of rows, so at most
#: log2 of this many distinct statements exist and all stay in sqlite3's statement cache.
_MAX_ROWS_PER_INSERT: Final = 256
_INSERT_ROWS: Final = {
    size: f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
    + ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * size)
    + " ON CONFLICT (internal_id) DO NOTHING"
    for size in (1 << bit for bit in range(_MAX_ROWS_PER_INSERT.bit_length()))
}
#: Rows of a batch of plain appends written by one statement (`_append_batch_alone`) at most; one
#: statement per row count, so the writer's statement cache holds this many of them.
_MAX_ROWS_ALONE: Final = 64
_INSERT_NEW_ROWS: Final = {
    size: f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
    + ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * size)
    for size in range(1, _MAX_ROWS_ALONE + 1)
}
_WRITER_STATEMENT_CACHE: Final = 256


@dataclass(slots=True)
class _Job:
    #: What the job does in the writer's transaction; None for a plain event append, which is
    #: `_insert_events` of its rows (no closure to make on the Event API's path).
    work: Callable[[sqlite3.Connection], Any] | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    #: For a plain event append (no runs): its rows, flattened (`_EVENT_WIDTH` values per row), so
    #: that the writer may merge it with its neighbours.
    append: list[object] | None = None
    result: Any = None
    error: BaseException | None = field(default=None)


def _insert_events(connection: sqlite3.Connection, flat: list[object]) -> int:
    """INSERT the flattened rows (in order, ids already stored skipped), in as few statements as
    the cached sizes allow; returns how many rows were new.

    One statement of many rows rather than `executemany`: the sqlite3 module releases and retakes
    the GIL around every step, so `executemany` contends once per row with the event loop's thread
    for the GIL, a multi-row INSERT once per statement.
    """
    before = connection.total_changes
    rows = len(flat) // _EVENT_WIDTH
    start = 0
    while start < rows:
        size = min(_MAX_ROWS_PER_INSERT, 1 << ((rows - start).bit_length() - 1))
        connection.execute(
            _INSERT_ROWS[size], flat[start * _EVENT_WIDTH : (start + size) * _EVENT_WIDTH]
        )
        start += size
    return connection.total_changes - before


def append_in_transaction(
    connection: sqlite3.Connection, events: Sequence[EventRecord], planned: Sequence[PlannedRun]
) -> int:
    """`append_events` inside a write job that is already running (its transaction): the events,
    then, if any was new, their planned runs. Returns how many events were new."""
    flat: list[object] = []
    for event in events:
        flat += _event_row(event)
    new = _insert_events(connection, flat)
    if new and planned:
        create_planned_runs(connection, planned)
    return new


def parse_sqlite_url(url: str) -> tuple[Path | str, str]:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite:///:memory:`; query option
    `synchronous=FULL|NORMAL|EXTRA` (FULL by default)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a sqlite URL: {url!r}")
    raw_path = (parts.netloc + parts.path)[1:] if parts.path.startswith("/") else parts.path
    if not raw_path:
        raise ConfigurationError(
            f"sqlite URL {url!r} names no file (use sqlite:///path/to/file.db)"
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    synchronous = options.get("synchronous", "FULL").upper()
    if synchronous not in _SYNCHRONOUS_MODES:
        raise ConfigurationError(f"synchronous must be one of {sorted(_SYNCHRONOUS_MODES)}")
    return (raw_path if raw_path == ":memory:" else Path(raw_path)), synchronous


class SQLiteStore(
    SQLiteRunVerbs, SQLiteWaitVerbs, SQLiteAppVerbs, SQLiteQueryVerbs, SQLiteCancellationVerbs
):
    """`Store` on one SQLite file (see the module docstring for how writes are grouped). The run
    verbs come from `SQLiteRunVerbs` (sqlite_runs.py) and use the same `_write`/`_read`."""

    def __init__(self, url: str) -> None:
        path, synchronous = parse_sqlite_url(url)
        if path == ":memory:":
            raise ConfigurationError(
                "an in-memory SQLite store cannot be shared by threads; use a file"
            )
        assert isinstance(path, Path)
        self.path = path
        self.url_for_display = url
        self._synchronous = synchronous
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_connections: list[sqlite3.Connection] = []
        self._read_connections_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer = threading.Thread(
            target=self._write_loop,
            args=(asyncio.get_running_loop(), ready),
            daemon=True,
            name="headwater-sqlite-writer",
        )
        self._writer.start()
        await ready
        self._readers = ThreadPoolExecutor(
            _READ_THREADS, thread_name_prefix="headwater-sqlite-read"
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._read_connections_lock:
            for connection in self._read_connections:
                connection.close()
            self._read_connections.clear()

    def _connect(self, cached_statements: int = 128) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            cached_statements=cached_statements,
        )
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        connection.execute(f"PRAGMA synchronous = {self._synchronous}")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    def _write_loop(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            connection = self._connect(_WRITER_STATEMENT_CACHE)
            connection.execute("PRAGMA journal_mode = WAL")
            self._migrate(connection)
        except BaseException as exc:  # report start-up failures to open()
            loop.call_soon_threadsafe(_set_exception, ready, exc)
            return
        loop.call_soon_threadsafe(_set_result, ready, None)
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _MAX_JOBS_PER_COMMIT:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit_batch(connection, batch)
                if stop:
                    return
        finally:
            connection.close()

    def _commit_batch(self, connection: sqlite3.Connection, batch: list[_Job]) -> None:
        if _append_batch_alone(connection, batch):
            self._settle_batch(batch)
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
            index = 0
            while index < len(batch):
                job = batch[index]
                if job.append is None:
                    _run_job(connection, job)
                    index += 1
                    continue
                end = index + 1
                while end < len(batch) and batch[end].append is not None:
                    end += 1
                _append_merged(connection, batch[index:end], first_in_transaction=index == 0)
                index = end
            connection.execute("COMMIT")
        except Exception as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            for job in batch:
                job.error = StoreError(f"SQLite commit failed: {exc}")
        self._settle_batch(batch)

    def _settle_batch(self, batch: list[_Job]) -> None:
        """Hand each job's outcome to its caller, with one call into each caller's event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, jobs)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        connection.execute("BEGIN IMMEDIATE")
        try:
            applied = {
                row[0] for row in connection.execute("SELECT version FROM schema_migrations")
            }
            for migration in load_migrations("sqlite"):
                if migration.version in applied:
                    continue
                for statement in _split_statements(migration.sql):
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, int(time.time() * 1000)),
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    # -- plumbing -----------------------------------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreError("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, loop, future))
        return await future

    def _read_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._read_connections_lock:
                self._read_connections.append(connection)
        return connection

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreError("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: work(self._read_connection()))

    # -- events -------------------------------------------------------------------------------

    def watch_queue(self, wake: Callable[[], None]) -> None:
        """Nothing to watch: one process owns a SQLite database, and its engine wakes its own
        worker."""

    async def append_events(
        self, events: Sequence[EventRecord], runs: Sequence[NewRun] = ()
    ) -> int:
        """With `runs`, the same job (so the same transaction) creates them as `create_runs`
        does, but only if at least one event was new: a seeded retry starts no runs again."""
        if not events:
            return 0
        flat: list[object] = []
        for event in events:
            flat += _event_row(event)
        if runs:
            planned = plan_runs(runs)

            def insert(connection: sqlite3.Connection) -> int:
                new = _insert_events(connection, flat)
                if new and planned:
                    create_planned_runs(connection, planned)
                return new

            return await self._write(insert)
        # `_write`, inlined: one coroutine fewer to suspend and resume on the Event API's path.
        if self._writer is None:
            raise StoreError("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._jobs.put(_Job(None, loop, future, flat))
        return await future

    async def get_event(self, internal_id: str) -> EventRecord | None:
        def select(connection: sqlite3.Connection) -> EventRecord | None:
            row = connection.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE internal_id = ?", (internal_id,)
            ).fetchone()
            return None if row is None else _event_record(row)

        return await self._read(select)

    async def list_events(self, query: EventQuery) -> list[EventRecord]:
        where, params = query.where("?")
        sql = f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY internal_id DESC LIMIT ?"
        params.append(query.limit)

        def select(connection: sqlite3.Connection) -> list[EventRecord]:
            return [_event_record(row) for row in connection.execute(sql, params)]

        return await self._read(select)

    async def count_events(self) -> int:
        def count(connection: sqlite3.Connection) -> int:
            return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])

        return await self._read(count)

    async def erase_users(self, blind_index: bytes) -> int:
        def erase(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "UPDATE events SET user_key_id = NULL, user_ciphertext = NULL,"
                " user_blind_index = NULL, user_erased = 1 WHERE user_blind_index = ?",
                (blind_index,),
            )
            return cursor.rowcount

        return await self._write(erase)

    async def events_sealed_with_other_keys(
        self, key_id: str, after_internal_id: str, limit: int
    ) -> list[tuple[str, SealedUser]]:
        def select(connection: sqlite3.Connection) -> list[tuple[str, SealedUser]]:
            rows = connection.execute(
                "SELECT internal_id, user_key_id, user_ciphertext, user_blind_index FROM events"
                " WHERE internal_id > ? AND user_key_id IS NOT NULL AND user_key_id != ?"
                " ORDER BY internal_id LIMIT ?",
                (after_internal_id, key_id, limit),
            )
            return [(row[0], SealedUser(row[1], row[2], row[3])) for row in rows]

        return await self._read(select)

    async def count_events_sealed_with_other_keys(self, key_id: str) -> int:
        def count(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                "SELECT count(*) FROM events WHERE user_key_id IS NOT NULL AND user_key_id != ?",
                (key_id,),
            ).fetchone()
            return int(row[0])

        return await self._read(count)

    async def reseal_users(self, rows: Sequence[tuple[str, SealedUser, str]]) -> int:
        params = [
            (sealed.key_id, sealed.ciphertext, sealed.blind_index, internal_id, old_key_id)
            for internal_id, sealed, old_key_id in rows
        ]

        def update(connection: sqlite3.Connection) -> int:
            before = connection.total_changes
            connection.executemany(
                "UPDATE events SET user_key_id = ?, user_ciphertext = ?, user_blind_index = ?"
                " WHERE internal_id = ? AND user_key_id = ?",
                params,
            )
            return connection.total_changes - before

        return await self._write(update)


def _event_row(event: EventRecord) -> tuple[object, ...]:
    sealed = event.user
    return (
        event.internal_id,
        event.id,
        event.name,
        event.data_json.decode(),
        sealed.key_id if sealed else None,
        sealed.ciphertext if sealed else None,
        sealed.blind_index if sealed else None,
        int(event.user_erased),
        event.ts,
        event.v,
        event.meta_json.decode() if event.meta_json is not None else None,
        event.received_at,
    )


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


def _split_statements(sql: str) -> list[str]:
    """Split a migration into statements (sqlite3 runs one per execute, inside our transaction)."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statement = "\n".join(current).strip()
            if statement.strip(";").strip():
                statements.append(statement)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


def _run_job(connection: sqlite3.Connection, job: _Job) -> None:
    """Run one job in its own savepoint: if it fails, only its own writes are undone."""
    connection.execute("SAVEPOINT job")
    try:
        if job.work is not None:
            job.result = job.work(connection)
        else:
            assert job.append is not None
            job.result = _insert_events(connection, job.append)
    except Exception as exc:
        # The same error type as the PostgreSQL backend: callers branch on StoreError.
        error = StoreError(f"SQLite write failed: {exc}")
        error.__cause__ = exc
        job.error = error
        connection.execute("ROLLBACK TO job")
    connection.execute("RELEASE job")


def _append_batch_alone(connection: sqlite3.Connection, batch: list[_Job]) -> bool:
    """Store a batch of nothing but plain appends, of at most `_MAX_ROWS_ALONE` rows, with one
    INSERT statement run in autocommit mode: SQLite makes it a transaction of its own, committed
    (and synced, per `synchronous`) before the statement returns. Whether the batch was stored so.

    One statement rather than BEGIN, INSERT, COMMIT: each statement releases the GIL and must take
    it back from the busy event loop's thread, which costs the writer up to a switch interval each
    time. The INSERT has no ON CONFLICT clause: an id already stored (a retried seeded send) fails
    it whole, as does any other error, and nothing is stored; `_commit_batch` then runs the batch
    the general way, where a conflict is skipped and each job counts its own new rows.
    """
    rows = 0
    for job in batch:
        if job.append is None:
            return False
        rows += len(job.append)
    rows //= _EVENT_WIDTH
    if rows > _MAX_ROWS_ALONE or connection.in_transaction:
        return False
    flat: list[object] = []
    for job in batch:
        assert job.append is not None
        flat += job.append
    try:
        connection.execute(_INSERT_NEW_ROWS[rows], flat)
    except Exception:
        if connection.in_transaction:  # not expected of a lone statement; be sure
            connection.execute("ROLLBACK")
        return False
    for job in batch:
        assert job.append is not None
        job.result = len(job.append) // _EVENT_WIDTH
    return True


def _append_merged(
    connection: sqlite3.Connection, jobs: list[_Job], *, first_in_transaction: bool
) -> None:
    """Run consecutive plain appends (one or more) as one INSERT of all their rows.

    That is only right when every row is new, for then each job's result is its row count and
    no job can have failed alone; otherwise (an id already stored, or repeated across jobs, or
    any error) the merged INSERT is undone and each job runs alone in its savepoint, exactly as
    without merging. First in the transaction, undoing is a rollback of the transaction; later,
    the merged INSERT runs in a savepoint of its own.
    """
    flat: list[object] = []
    for job in jobs:
        assert job.append is not None
        flat += job.append
    if not first_in_transaction:
        connection.execute("SAVEPOINT merged")
    try:
        all_new = _insert_events(connection, flat) * _EVENT_WIDTH == len(flat)
    except Exception:
        all_new = False
    if all_new:
        if not first_in_transaction:
            connection.execute("RELEASE merged")
        for job in jobs:
            assert job.append is not None
            job.result = len(job.append) // _EVENT_WIDTH
        return
    if first_in_transaction:
        connection.execute("ROLLBACK")
        connection.execute("BEGIN IMMEDIATE")
    else:
        connection.execute("ROLLBACK TO merged")
        connection.execute("RELEASE merged")
    for job in jobs:
        _run_job(connection, job)


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the caller was cancelled; the write still happened
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def _set_result(future: asyncio.Future[None], value: None) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
