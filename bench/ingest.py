"""Load benchmark of the Event API (`POST /e/{key}`), with this machine's ceilings beside it.

Run: `.venv/bin/python bench/ingest.py [--seconds 10] [--only sqlite|postgres|ceilings]`
(`make bench` runs it). Not part of the test suite.

What it does, in one run so the ratios compare like with like on a noisy machine:

* HTTP ceiling: a bare ASGI app (below) served by uvicorn exactly as Headwater is (uvloop,
  httptools, no access log) that reads the body, parses it with orjson and answers
  `{"ids": [...], "status": 200}` without storing anything.
* Storage ceiling: the rows Headwater would store (`EventLog.seal` of the same events) inserted
  straight into the database with the same durability and INSERT as the store, one transaction
  per 100 rows, in a tight loop (only the database calls are timed).
* Headwater on SQLite and on PostgreSQL (`python -m headwater dev ...`, as a user starts it).
* A diagnostic: Headwater's whole app with event appends answered at once, storing nothing
  (`--serve-unstored`), under the single-event load: the ceiling of any event store on this
  request path, so the gap between it and the HTTP ceiling is validation, sealing and answering.

Load comes from `wrk` in its own process with a Lua script (written to a temp file) that POSTs
(a) one event per request from 64 connections and (b) 100 events per request from 16 connections.
The Lua script counts 200 responses, so each Headwater run checks acknowledged <= stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson
from rich.console import Console
from rich.table import Table

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"
EVENT_KEY: Final = "bench-key"
INGEST_PATH: Final = f"/e/{EVENT_KEY}"
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"

#: Targets the results are judged against.
TARGET_SINGLE_VS_HTTP: Final = 0.7
TARGET_BATCH_VS_STORAGE: Final = 0.5
TARGET_P99_MS: Final = 50.0

#: Wide enough for the tables when the output is piped or logged.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


# -- the workload ------------------------------------------------------------------------------


def make_event(i: int) -> dict[str, Any]:
    """A realistic event (~250 bytes of JSON) with a `user`, so sealing is on the measured path."""
    return {
        "name": "shop/order.created",
        "data": {
            "order_id": f"ord_{i:010d}",
            "amount_cents": 4999 + (i * 37) % 10_000,
            "currency": "EUR",
            "items": [{"sku": f"SKU-{1000 + i % 500}", "qty": 1 + i % 3}],
            "coupon": None,
            "channel": "web",
        },
        "user": {
            "external_id": f"user_{i % 50_000:06d}",
            "email": f"customer.{i % 50_000}@example.com",
        },
        "v": "2024-06-01.1",
    }


def request_body(events_per_request: int) -> bytes:
    if events_per_request == 1:
        return orjson.dumps(make_event(1))
    return orjson.dumps([make_event(i) for i in range(events_per_request)])


_WRK_SCRIPT: Final = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[@BODY@]==]

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  other = 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local ok_total, other_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    other_total = other_total + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"ok":%d,"other":%d,"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    ok_total, other_total, summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_script(body: bytes) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the request body cannot be embedded in a Lua long string")
    return _WRK_SCRIPT.replace("@BODY@", text)


@dataclass
class Load:
    """One wrk configuration: how many events per request, from how many connections."""

    label: str
    events_per_request: int
    connections: int
    threads: int


@dataclass
class WrkResult:
    ok: int
    other: int
    requests: int
    duration_us: int
    bytes: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float
    errors: dict[str, int]

    @property
    def seconds(self) -> float:
        return self.duration_us / 1e6


def run_wrk(url: str, load: Load, seconds: float, script_dir: Path) -> WrkResult:
    script = script_dir / f"bench-{load.events_per_request}.lua"
    script.write_text(wrk_script(request_body(load.events_per_request)))
    command = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url + INGEST_PATH,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return WrkResult(**orjson.loads(line.removeprefix("BENCH_RESULT ")))
    raise RuntimeError(
        f"wrk printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )


# -- result records ----------------------------------------------------------------------------


@dataclass
class Measurement:
    """One load measurement (a wrk run) against one server."""

    target: str  # "http-ceiling", "sqlite", "postgres"
    load: str  # "single" or "batch"
    connections: int
    events_per_request: int
    seconds: float
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    ok_responses: int
    other_responses: int
    socket_errors: dict[str, int]
    #: Events acknowledged (200 x events per request), warm-up included, and rows that appeared.
    acknowledged_events: int | None = None
    stored_rows: int | None = None
    correct: bool | None = None


@dataclass
class StorageCeiling:
    backend: str
    rows_per_s: float
    rows: int
    transactions: int
    db_seconds: float
    wall_seconds: float
    durability: str


@dataclass
class ServerRun:
    target: str
    peak_rss_mb: float | None
    measurements: list[Measurement] = field(default_factory=list)
    skipped: str | None = None


def measurement(target: str, load: Load, result: WrkResult) -> Measurement:
    seconds = result.seconds
    return Measurement(
        target=target,
        load=load.label,
        connections=load.connections,
        events_per_request=load.events_per_request,
        seconds=round(seconds, 3),
        requests_per_s=result.ok / seconds,
        events_per_s=result.ok * load.events_per_request / seconds,
        p50_ms=result.p50_us / 1000,
        p90_ms=result.p90_us / 1000,
        p99_ms=result.p99_us / 1000,
        max_ms=result.max_us / 1000,
        ok_responses=result.ok,
        other_responses=result.other,
        socket_errors={k: v for k, v in result.errors.items() if v and k != "status"},
    )


# -- child processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server in a child process, answering GET /health."""

    def __init__(self, command: list[str], port: int, log_path: Path) -> None:
        self.command = command
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer /health in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def peak_rss_mb(self) -> float | None:
        """VmHWM of the server process: its peak resident set so far."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the HTTP ceiling: a bare ASGI app ---------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class CeilingApp:
    """Reads the body, parses it with orjson, answers like the Event API; stores nothing."""

    def __init__(self) -> None:
        self.next_id = 0

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["path"] == "/health":
            payload = b'{"status":200,"message":"OK"}'
        else:
            decoded = orjson.loads(b"".join(chunks))
            count = len(decoded) if isinstance(decoded, list) else 1
            first = self.next_id
            self.next_id += count
            # Ids as long as ULIDs, so the responses are as large as Headwater's.
            ids = [f"{n:026d}" for n in range(first, first + count)]
            payload = b'{"ids":' + orjson.dumps(ids) + b',"status":200}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def serve_asgi(app: Any, port: int, *, lifespan: str) -> None:
    """Serve `app` with the same server settings as `headwater dev` (see headwater.cli._serve)."""
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan=lifespan,
        server_header=False,
        date_header=False,
    )


def serve_http_ceiling(port: int) -> None:
    serve_asgi(CeilingApp(), port, lifespan="off")


# -- Headwater without its event store's write (a diagnostic) -----------------------------------


def serve_unstored(port: int, data_dir: Path) -> None:
    """Headwater's whole app (`create_app`, the dev settings, a real SQLite store and engine) with
    one change: appending events returns at once, storing nothing. What it serves is the ceiling
    of any event store on this request path: how fast validating, sealing and answering are
    without a single write. It is a measurement aid, never a server to use."""
    from headwater.config import Mode, ServerSettings
    from headwater.crypto import KeyFile
    from headwater.server.app import create_app
    from headwater.store.sqlite import SQLiteStore

    class DiscardingStore(SQLiteStore):
        async def append_events(self, events: Sequence[Any], runs: Sequence[Any] = ()) -> int:
            return len(events)

    settings = ServerSettings(
        mode=Mode.DEV, host="127.0.0.1", port=port, data_dir=data_dir, discovery_ports=()
    )
    store = DiscardingStore(settings.database_url)
    app = create_app(settings, KeyFile.load_or_create(settings.key_file), store)
    serve_asgi(app, port, lifespan="on")


# -- the storage ceiling -----------------------------------------------------------------------


class Sealer:
    """Makes what Headwater's EventLog would store for a batch of the benchmark's events."""

    def __init__(self, store: Any) -> None:
        from headwater.crypto import KEY_BYTES, KeyRing, StaticKeys, generate_key
        from headwater.engine.event_log import EventLog

        keys = StaticKeys(KeyRing([generate_key("bench")], os.urandom(KEY_BYTES)))
        self.event_log = EventLog(store, keys)
        self.raw = [make_event(i) for i in range(100)]

    def records(self, size: int) -> list[Any]:
        from headwater.protocol.events import normalize_events

        now = time.time_ns() // 1_000_000
        events = normalize_events(self.raw[:size], now)
        return self.event_log.seal(events, None, now)


#: The statements and row encodings of the stores' appends (SQLiteStore.append_events,
#: PostgresStore.append_events), written out here so that the ceilings do not depend on private
#: names of the stores; keep them in step if the stores change how they insert events.
_EVENT_COLUMNS: Final = (
    "internal_id, id, name, data, user_key_id, user_ciphertext, user_blind_index, user_erased,"
    " ts, v, meta, received_at"
)
_SQLITE_INSERT: Final = (
    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (internal_id) DO NOTHING"
)
_POSTGRES_INSERT: Final = (
    f"INSERT INTO events ({_EVENT_COLUMNS})"
    " SELECT internal_id, id, name, data::jsonb, user_key_id, user_ciphertext, user_blind_index,"
    " user_erased, ts, v, meta::jsonb, received_at"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bytea[],"
    " %b::bytea[], %b::bool[], %b::int8[], %b::text[], %b::text[], %b::int8[])"
    " AS batch(internal_id, id, name, data, user_key_id, user_ciphertext, user_blind_index,"
    " user_erased, ts, v, meta, received_at)"
    " ON CONFLICT (internal_id) DO NOTHING"
)


def _row(record: Any) -> tuple[Any, ...]:
    sealed = record.user
    return (
        record.internal_id,
        record.id,
        record.name,
        record.data_json.decode(),
        sealed.key_id if sealed else None,
        sealed.ciphertext if sealed else None,
        sealed.blind_index if sealed else None,
        record.user_erased,
        record.ts,
        record.v,
        record.meta_json.decode() if record.meta_json is not None else None,
        record.received_at,
    )


def _sqlite_row(record: Any) -> tuple[Any, ...]:
    row = _row(record)
    return (*row[:7], int(row[7]), *row[8:])


def sqlite_storage_ceiling(data_dir: Path, seconds: float, batch: int) -> StorageCeiling:
    from headwater.store.sqlite import SQLiteStore

    path = data_dir / "ceiling.db"
    store = SQLiteStore(f"sqlite:///{path}")

    async def migrate() -> None:
        await store.open()
        await store.close()

    asyncio.run(migrate())
    sealer = Sealer(store)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    rows = transactions = 0
    db_seconds = 0.0
    started = time.perf_counter()
    try:
        while db_seconds < seconds:
            params = [_sqlite_row(record) for record in sealer.records(batch)]
            t0 = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(_SQLITE_INSERT, params)
            connection.execute("COMMIT")
            db_seconds += time.perf_counter() - t0
            rows += len(params)
            transactions += 1
        stored = int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        connection.close()
    if stored != rows:
        raise RuntimeError(f"storage ceiling inserted {rows} rows but {stored} are stored")
    return StorageCeiling(
        backend="sqlite",
        rows_per_s=rows / db_seconds,
        rows=rows,
        transactions=transactions,
        db_seconds=round(db_seconds, 3),
        wall_seconds=round(time.perf_counter() - started, 3),
        durability="WAL, synchronous=FULL",
    )


def _postgres_columns(records: Sequence[Any]) -> list[list[Any]]:
    """One array per column, rows in internal id order, as PostgresStore.append_events sends."""
    columns: list[list[Any]] = [[] for _ in range(12)]
    for record in sorted(records, key=lambda r: r.internal_id):
        for column, value in zip(columns, _row(record), strict=True):
            column.append(value)
    return columns


def postgres_storage_ceiling(url: str, seconds: float, batch: int) -> StorageCeiling:
    import psycopg

    from headwater.store import open_store

    store = open_store(url)

    async def migrate() -> None:
        await store.open()
        await store.close()

    asyncio.run(migrate())
    sealer = Sealer(store)
    rows = transactions = 0
    db_seconds = 0.0
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        settings = {}
        for name in ("synchronous_commit", "fsync", "wal_sync_method"):
            row = connection.execute(f"SHOW {name}").fetchone()
            settings[name] = str(row[0]) if row else "?"
        while db_seconds < seconds:
            params = _postgres_columns(sealer.records(batch))
            t0 = time.perf_counter()
            # One statement, so one transaction, per batch on an autocommit connection, as the
            # store runs it.
            connection.execute(_POSTGRES_INSERT, params)
            db_seconds += time.perf_counter() - t0
            rows += batch
            transactions += 1
        row = connection.execute("SELECT count(*) FROM events").fetchone()
        stored = int(row[0]) if row else -1
    if stored != rows:
        raise RuntimeError(f"storage ceiling inserted {rows} rows but {stored} are stored")
    return StorageCeiling(
        backend="postgres",
        rows_per_s=rows / db_seconds,
        rows=rows,
        transactions=transactions,
        db_seconds=round(db_seconds, 3),
        wall_seconds=round(time.perf_counter() - started, 3),
        durability=", ".join(f"{k}={v}" for k, v in settings.items()),
    )


# -- PostgreSQL: a fresh database per run ------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@contextlib.contextmanager
def fresh_postgres_database(url: str, purpose: str) -> Iterator[str]:
    """Create an empty database next to `url`'s, yield its URL, drop it afterwards."""
    import psycopg

    dbname = f"headwater_bench_{purpose}_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield with_database(url, dbname)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def postgres_unavailable(url: str) -> str | None:
    """Why the PostgreSQL part cannot run, or None."""
    import importlib.util

    if importlib.util.find_spec("headwater.store.postgres") is None:
        return "headwater.store.postgres does not exist yet"
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        return f"cannot connect to {url}: {exc}"
    return None


# -- row counts for the correctness check ------------------------------------------------------


def sqlite_counter(path: Path) -> Callable[[], int]:
    def count() -> int:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            connection.close()

    return count


def postgres_counter(url: str) -> Callable[[], int]:
    def count() -> int:
        import psycopg

        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT count(*) FROM events").fetchone()
            assert row is not None
            return int(row[0])

    return count


def settled_count(count: Callable[[], int]) -> int:
    """The row count once requests still in flight when wrk stopped have been committed."""
    previous = count()
    for _ in range(50):
        time.sleep(0.2)
        current = count()
        if current == previous:
            return current
        previous = current
    return previous


# -- phases ------------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    warmup: float
    loads: list[Load]
    work_dir: Path


def probe(server: Server) -> None:
    """One event by hand before any load, so a broken server fails with its own message."""
    request = urllib.request.Request(
        server.url + INGEST_PATH,
        data=request_body(1),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(
            f"POST {INGEST_PATH} answered {exc.code}: {exc.read()[:300]!r}\n{server.log_tail()}"
        ) from None
    if not (isinstance(answer, dict) and len(answer.get("ids", [])) == 1):
        raise RuntimeError(f"POST {INGEST_PATH} answered {answer!r}")


def load_server(
    server: Server,
    target: str,
    options: Options,
    count: Callable[[], int] | None,
) -> list[Measurement]:
    probe(server)
    results: list[Measurement] = []
    for load in options.loads:
        before = count() if count is not None else 0
        acknowledged = 0
        if options.warmup > 0:
            console.print(f"  warm-up {load.label} ({options.warmup:g} s)")
            warm = run_wrk(server.url, load, options.warmup, options.work_dir)
            acknowledged += warm.ok * load.events_per_request
        console.print(
            f"  {load.label}: {load.events_per_request} event(s)/request, "
            f"{load.connections} connections, {options.seconds:g} s"
        )
        result = run_wrk(server.url, load, options.seconds, options.work_dir)
        acknowledged += result.ok * load.events_per_request
        record = measurement(target, load, result)
        if count is not None:
            stored = settled_count(count) - before
            record.acknowledged_events = acknowledged
            record.stored_rows = stored
            record.correct = acknowledged <= stored
            verdict = "[green]ok[/]" if record.correct else "[bold red]LOST EVENTS[/]"
            console.print(
                f"    acknowledged {acknowledged} events, {stored} rows stored: {verdict}"
            )
        console.print(
            f"    {record.events_per_s:,.0f} events/s, {record.requests_per_s:,.0f} requests/s,"
            f" p50 {record.p50_ms:.1f} ms, p99 {record.p99_ms:.1f} ms"
            + (f", {record.other_responses} non-200" if record.other_responses else "")
            + (f", socket errors {record.socket_errors}" if record.socket_errors else "")
        )
        results.append(record)
    return results


def run_http_ceiling(options: Options) -> ServerRun:
    console.rule("[bold]HTTP ceiling[/]: bare ASGI app on uvicorn (uvloop, httptools)")
    port = free_port()
    server = Server(
        [sys.executable, str(Path(__file__).resolve()), "--serve-http-ceiling", str(port)],
        port,
        options.work_dir / "http-ceiling.log",
    )
    with running(server):
        measurements = load_server(server, "http-ceiling", options, None)
        rss = server.peak_rss_mb()
    return ServerRun("http-ceiling", rss, measurements)


def run_unstored(options: Options) -> ServerRun:
    console.rule("[bold]Headwater, events validated and sealed but not stored[/] (diagnostic)")
    data_dir = Path(tempfile.mkdtemp(prefix="headwater-unstored-", dir=options.work_dir))
    port = free_port()
    server = Server(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-unstored",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        port,
        options.work_dir / "headwater-unstored.log",
    )
    single = [load for load in options.loads if load.events_per_request == 1]
    with running(server):
        measurements = load_server(
            server, "unstored", dataclasses.replace(options, loads=single), None
        )
        rss = server.peak_rss_mb()
    return ServerRun("unstored", rss, measurements)


def run_headwater(target: str, options: Options, db_url: str | None) -> ServerRun:
    console.rule(f"[bold]Headwater on {target}[/]")
    data_dir = Path(tempfile.mkdtemp(prefix=f"headwater-{target}-", dir=options.work_dir))
    port = free_port()
    command = [sys.executable, "-m", "headwater", "dev", "--no-discovery", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"]
    if db_url is not None:
        command += ["--db", db_url]
        count = postgres_counter(db_url)
    else:
        count = sqlite_counter(data_dir / "headwater.db")
    server = Server(command, port, options.work_dir / f"headwater-{target}.log")
    with running(server):
        console.print(
            f"  server pid {server.process.pid if server.process else '?'} on {server.url}"
        )
        measurements = load_server(server, target, options, count)
        rss = server.peak_rss_mb()
    return ServerRun(target, rss, measurements)


# -- report ------------------------------------------------------------------------------------


def _ratio(value: float | None, ceiling: float | None) -> float | None:
    if value is None or not ceiling:
        return None
    return value / ceiling


def find(runs: Sequence[ServerRun], target: str, load: str) -> Measurement | None:
    for run in runs:
        if run.target == target:
            for m in run.measurements:
                if m.load == load:
                    return m
    return None


def checks(runs: Sequence[ServerRun], storage: dict[str, StorageCeiling]) -> list[dict[str, Any]]:
    http_single = find(runs, "http-ceiling", "single")
    found: list[dict[str, Any]] = []
    for target in ("sqlite", "postgres"):
        single = find(runs, target, "single")
        batch = find(runs, target, "batch")
        ceiling = storage.get(target)
        if single is not None:
            ratio = _ratio(single.events_per_s, http_single.requests_per_s if http_single else None)
            found.append(
                {
                    "check": f"{target}: single-event events/s ÷ HTTP ceiling requests/s",
                    "value": ratio,
                    "target": f">= {TARGET_SINGLE_VS_HTTP}",
                    "pass": None if ratio is None else ratio >= TARGET_SINGLE_VS_HTTP,
                }
            )
            found.append(
                {
                    "check": f"{target}: p99 latency at {single.connections} connections (ms)",
                    "value": single.p99_ms,
                    "target": f"< {TARGET_P99_MS:g}",
                    "pass": single.p99_ms < TARGET_P99_MS,
                }
            )
        if batch is not None:
            ratio = _ratio(batch.events_per_s, ceiling.rows_per_s if ceiling else None)
            found.append(
                {
                    "check": f"{target}: batched events/s ÷ storage ceiling rows/s",
                    "value": ratio,
                    "target": f">= {TARGET_BATCH_VS_STORAGE}",
                    "pass": None if ratio is None else ratio >= TARGET_BATCH_VS_STORAGE,
                }
            )
        for m in (single, batch):
            if m is not None and m.correct is not None:
                found.append(
                    {
                        "check": f"{target} {m.load}: acknowledged events <= stored rows",
                        "value": f"{m.acknowledged_events} <= {m.stored_rows}",
                        "target": "true",
                        "pass": m.correct,
                    }
                )
    return found


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def results_table(
    runs: Sequence[ServerRun], storage: dict[str, StorageCeiling], seconds: float
) -> Table:
    table = Table(title=f"Ingest benchmark ({seconds:g} s per measurement, {os.cpu_count()} CPUs)")
    for column, justify in (
        ("measurement", "left"),
        ("conns", "right"),
        ("events/s", "right"),
        ("requests/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("peak RSS MB", "right"),
        ("vs ceiling", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    http_single = find(runs, "http-ceiling", "single")
    http_batch = find(runs, "http-ceiling", "batch")
    for run in runs:
        if run.skipped:
            table.add_row(f"{run.target}: skipped ({run.skipped})")
            continue
        for m in run.measurements:
            if run.target == "http-ceiling":
                name = f"HTTP ceiling, {m.load} ({m.events_per_request}/req)"
            elif run.target == "unstored":
                name = f"Headwater, not stored, {m.load} ({m.events_per_request}/req)"
            else:
                name = f"Headwater {run.target}, {m.load} ({m.events_per_request}/req)"
            vs = ""
            if run.target != "http-ceiling":
                if m.load == "single" and http_single is not None:
                    vs = f"{m.events_per_s / http_single.requests_per_s:.2f} of HTTP"
                elif m.load == "batch":
                    ceiling = storage.get(run.target)
                    parts = []
                    if ceiling is not None:
                        parts.append(f"{m.events_per_s / ceiling.rows_per_s:.2f} of storage")
                    if http_batch is not None:
                        parts.append(f"{m.events_per_s / http_batch.events_per_s:.2f} of HTTP")
                    vs = "; ".join(parts)
            table.add_row(
                name,
                str(m.connections),
                _num(m.events_per_s),
                _num(m.requests_per_s),
                _num(m.p50_ms, 1),
                _num(m.p99_ms, 1),
                _num(run.peak_rss_mb, 0),
                vs,
            )
        if run.target == "http-ceiling":
            for ceiling in storage.values():
                table.add_row(
                    f"Storage ceiling {ceiling.backend} (100 rows/txn)",
                    "1",
                    _num(ceiling.rows_per_s),
                    _num(ceiling.transactions / ceiling.db_seconds),
                    "",
                    "",
                    "",
                    "",
                )
    notes = [
        f"storage ceiling {c.backend}: requests/s = transactions/s; {c.durability}"
        for c in storage.values()
    ]
    if any(run.target == "unstored" and run.measurements for run in runs):
        notes.append(
            "not stored: the whole app with appends discarded (validation, sealing, answering): "
            "what any event store could reach on this request path"
        )
    if notes:
        table.caption = "\n".join(notes)
    return table


def checks_table(found: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="Targets")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result")
    for item in found:
        value = item["value"]
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "n/a"}[item["pass"]]
        table.add_row(item["check"], shown, item["target"], verdict)
    return table


def machine_info(postgres_url: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
    }
    with contextlib.suppress(Exception):
        info["wrk"] = subprocess.run(
            ["wrk", "-v"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
    if postgres_url is not None:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(postgres_url, connect_timeout=5) as connection:
                row = connection.execute("SHOW server_version").fetchone()
                info["postgres"] = row[0] if row else None
    return info


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load benchmark of POST /e/{key} against this machine's HTTP and storage ceilings."
    )
    parser.add_argument(
        "--only",
        choices=["sqlite", "postgres", "ceilings"],
        help="sqlite/postgres: that backend and the ceilings its ratios need; ceilings: only those",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up before each measurement (default 2)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HEADWATER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL the benchmark may create and drop a database in",
    )
    parser.add_argument("--connections", type=int, default=64, help="single-event load (64)")
    parser.add_argument("--batch-connections", type=int, default=16, help="batch load (16)")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch (100)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (2)")
    parser.add_argument("--serve-http-ceiling", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-unstored", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_http_ceiling is not None:
        serve_http_ceiling(args.serve_http_ceiling)
        return 0
    if args.serve_unstored is not None:
        serve_unstored(args.serve_unstored, args.data_dir)
        return 0
    if shutil.which("wrk") is None:
        console.print(
            "[bold red]wrk is not installed.[/] It is the load generator of this benchmark; "
            "install it with:\n\n    apt-get install -y wrk\n\n(Debian/Ubuntu; `brew install wrk` "
            "on macOS), then run this again."
        )
        return 2

    want_sqlite = args.only in (None, "sqlite", "ceilings")
    want_postgres = args.only in (None, "postgres", "ceilings")
    run_servers = args.only != "ceilings"
    postgres_skip = postgres_unavailable(args.postgres_url) if want_postgres else None
    if postgres_skip is not None:
        console.print(f"[yellow]PostgreSQL part skipped:[/] {postgres_skip}")

    started = datetime.now(UTC)
    work_dir = Path(tempfile.mkdtemp(prefix="headwater-bench-"))
    options = Options(
        seconds=args.seconds,
        warmup=args.warmup,
        loads=[
            Load("single", 1, args.connections, args.wrk_threads),
            Load("batch", args.batch_size, args.batch_connections, args.wrk_threads),
        ],
        work_dir=work_dir,
    )
    console.print(f"[bold]Headwater ingest benchmark[/]; scratch files in {work_dir}")
    event_size = len(request_body(1))
    console.print(
        f"event: {event_size} bytes of JSON; batch body: {len(request_body(args.batch_size))} bytes"
    )
    runs: list[ServerRun] = []
    storage: dict[str, StorageCeiling] = {}
    failures: list[str] = []

    def phase(name: str, work: Callable[[], None]) -> None:
        """Run one phase; a failure is reported and the other phases still run."""
        try:
            work()
        except Exception as exc:
            console.print(f"[bold red]{name} failed:[/] {type(exc).__name__}: {exc}")
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")

    def http_ceiling() -> None:
        runs.append(run_http_ceiling(options))

    def storage_ceiling(backend: str) -> None:
        console.rule(f"[bold]Storage ceiling: {backend}[/]")
        console.print(f"  {args.batch_size}-row transactions for {args.seconds:g} s")
        if backend == "sqlite":
            ceiling = sqlite_storage_ceiling(work_dir, args.seconds, args.batch_size)
        else:
            with fresh_postgres_database(args.postgres_url, "ceiling") as url:
                ceiling = postgres_storage_ceiling(url, args.seconds, args.batch_size)
        console.print(f"    {ceiling.rows_per_s:,.0f} rows/s ({ceiling.durability})")
        storage[backend] = ceiling

    def headwater(backend: str) -> None:
        try:
            if backend == "sqlite":
                runs.append(run_headwater("sqlite", options, None))
            else:
                with fresh_postgres_database(args.postgres_url, "server") as url:
                    runs.append(run_headwater("postgres", options, url))
        except Exception as exc:
            runs.append(ServerRun(backend, None, skipped=f"failed: {str(exc)[:200]}"))
            raise

    def unstored() -> None:
        runs.append(run_unstored(options))

    try:
        phase("HTTP ceiling", http_ceiling)
        if run_servers:
            phase("Headwater without storing", unstored)
        if want_sqlite:
            phase("SQLite storage ceiling", lambda: storage_ceiling("sqlite"))
            if run_servers:
                phase("Headwater on SQLite", lambda: headwater("sqlite"))
        if want_postgres:
            if postgres_skip is None:
                phase("PostgreSQL storage ceiling", lambda: storage_ceiling("postgres"))
                if run_servers:
                    phase("Headwater on PostgreSQL", lambda: headwater("postgres"))
            elif run_servers:
                runs.append(ServerRun("postgres", None, skipped=postgres_skip))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; reporting what was measured[/]")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    found = checks(runs, storage)
    console.print()
    console.print(results_table(runs, storage, args.seconds))
    if found:
        console.print(checks_table(found))

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started_at": started.isoformat(),
        "machine": machine_info(args.postgres_url if postgres_skip is None else None),
        "parameters": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "loads": [asdict(load) for load in options.loads],
            "event_bytes": event_size,
        },
        "runs": [asdict(run) for run in runs],
        "storage_ceilings": {name: asdict(c) for name, c in storage.items()},
        "checks": found,
        "failures": failures,
    }
    out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    console.print(f"results written to {out.relative_to(ROOT)}")
    lost = any(m.correct is False for run in runs for m in run.measurements)
    if lost:
        console.print("[bold red]some acknowledged events were not stored[/]")
    for failure in failures:
        console.print(f"[red]failed:[/] {failure}")
    return 1 if lost or failures else 0


if __name__ == "__main__":
    sys.exit(main())
