"""Page render times of the dashboard with 1,000,000 events and 1,000,000 runs in SQLite.

Run: `.venv/bin/python bench/dashboard.py [--events 1000000] [--runs 1000000] [--requests 40]`.
Not part of the test suite.

1. Fill: a fresh SQLite database is migrated by the store itself, then filled straight through its
   tables (bulk INSERTs in large transactions, synchronous=OFF while filling: this measures reads,
   not the ingest path, which bench/ingest.py measures). Events and runs are spread over the last
   7 days; each run is linked to one event; runs are 90% Completed, 6% Failed, the rest Cancelled,
   Running or Queued, over a dozen functions (two of them those of tests/integration/apps/dash.py,
   which the server runs, so its pages have stats to count); the newest 2,000 runs have 3 steps.
2. Serve: `python -m headwater dev tests.integration.apps.dash:hw --db <that file>`.
3. Measure: each page (and filtered variants) is requested `--requests` times in a row after one
   warm-up request; p50 and p99 of the full response time (render included) are reported against
   the 200 ms target, and written to bench/results/dashboard-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from headwater.protocol.ids import encode_ulid
from headwater.store.sqlite import SQLiteStore

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"
TARGET_MS: Final = 200.0
CHUNK: Final = 20_000
SPREAD_MS: Final = 7 * 86_400_000
FUNCTIONS: Final = ["dash-pipeline", "dash-sleeper"] + [f"shop-fn-{i}" for i in range(10)]
EVENT_NAMES: Final = ["dash/order.placed", "dash/sleep"] + [f"shop/thing.{i}" for i in range(18)]
STATUSES: Final = (
    ["Completed"] * 900 + ["Failed"] * 60 + ["Cancelled"] * 20 + ["Running"] * 10 + ["Queued"] * 10
)

console = Console(width=120)


def fill(path: Path, events: int, runs: int) -> tuple[str, str]:
    """Fill the database; returns (an event id, a run id) of the newest rows, for detail pages."""
    asyncio.run(_migrate(path))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("PRAGMA journal_mode = WAL")
    rng = random.Random(7)
    now = int(time.time() * 1000)
    start = now - SPREAD_MS
    event_ids: list[str] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("events", total=events)
        step = SPREAD_MS / events
        for base in range(0, events, CHUNK):
            rows = []
            for index in range(base, min(base + CHUNK, events)):
                at = int(start + index * step)
                internal_id = encode_ulid(at, rng.getrandbits(80))
                event_ids.append(internal_id)
                name = EVENT_NAMES[index % len(EVENT_NAMES)]
                data = orjson.dumps({"order": index, "total": index % 997, "tags": ["a", "b"]})
                rows.append((internal_id, internal_id, name, data.decode(), at, at))
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO events (internal_id, id, name, data, ts, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            connection.execute("COMMIT")
            progress.advance(task, len(rows))
        task = progress.add_task("runs", total=runs)
        step = SPREAD_MS / runs
        last_run = ""
        for base in range(0, runs, CHUNK):
            run_rows, links, steps = [], [], []
            for index in range(base, min(base + CHUNK, runs)):
                at = int(start + index * step)
                run_id = encode_ulid(at, rng.getrandbits(80))
                status = STATUSES[rng.randrange(len(STATUSES))]
                final = status not in ("Running", "Queued")
                error = '{"name":"Error","message":"boom","stack":"Traceback..."}'
                run_rows.append(
                    (
                        run_id,
                        FUNCTIONS[index % len(FUNCTIONS)],
                        status,
                        at,
                        at + 1 if status != "Queued" else None,
                        at + 250 if final else None,
                        '{"ok":true}' if status == "Completed" else None,
                        error if status == "Failed" else None,
                    )
                )
                links.append(
                    (run_id, 0, event_ids[min(index * len(event_ids) // runs, len(event_ids) - 1)])
                )
                if index >= runs - 2_000:
                    for seq, name in enumerate(("load", "pause", "save"), start=1):
                        op = "Sleep" if name == "pause" else "StepRun"
                        steps.append(
                            (
                                run_id,
                                f"{name}-id",
                                seq,
                                name,
                                op,
                                '{"data":{"n":1}}',
                                at + seq * 50,
                                at + seq * 60,
                                1,
                            )
                        )
                last_run = run_id
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO runs (run_id, function_id, status, created_at, started_at, ended_at,"
                " output, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                run_rows,
            )
            connection.executemany(
                "INSERT INTO run_events (run_id, position, event_id) VALUES (?, ?, ?)", links
            )
            connection.executemany(
                "INSERT INTO run_steps (run_id, step_id, seq, name, op, memo, started_at,"
                " ended_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                steps,
            )
            connection.execute("COMMIT")
            progress.advance(task, len(run_rows))
    connection.execute("ANALYZE")
    connection.close()
    return event_ids[-1], last_run


async def _migrate(path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    await store.close()


def _jobs(base: str) -> tuple[str, str]:
    """A bulk replay and a bulk cancellation started through the API, so that their pages have
    one to show: each over a window of a minute a year ago, which holds no run, so it ends at
    once and touches nothing the other pages read."""
    start = datetime.now(UTC) - timedelta(days=365)
    window = {
        "from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "to": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    replay = httpx.post(
        f"{base}/v1/replays", json={"function_id": "dash-pipeline", **window}, timeout=30
    )
    replay.raise_for_status()
    cancellation = httpx.post(
        f"{base}/v1/cancellations",
        json={
            "app_id": "dash",
            "function_id": "pipeline",
            "started_after": window["from"],
            "started_before": window["to"],
        },
        timeout=30,
    )
    cancellation.raise_for_status()
    return replay.json()["data"]["id"], cancellation.json()["data"]["id"]


def _cursor_in_the_middle(path: Path) -> str:
    """The cursor of a page of runs half way back in time."""
    connection = sqlite3.connect(path)
    row = connection.execute(
        "SELECT created_at, run_id FROM runs WHERE created_at < ? ORDER BY created_at DESC LIMIT 1",
        (int(time.time() * 1000) - SPREAD_MS // 2,),
    ).fetchone()
    connection.close()
    return f"{row[0]}.{row[1]}"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(base: str, pages: dict[str, str], requests: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/events")  # a session cookie, as a browser has
        for label, path in pages.items():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            times = []
            for _ in range(requests):
                began = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200
            times.sort()
            results[label] = {
                "p50_ms": statistics.median(times),
                "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
                "bytes": len(response.content),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", help="reuse (or keep) this database file")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="hw-dash-bench-"))
    path = Path(args.keep) if args.keep else folder / "dashboard.db"
    began = time.monotonic()
    if path.exists():
        connection = sqlite3.connect(path)
        event_id = connection.execute("SELECT max(internal_id) FROM events").fetchone()[0]
        run_id = connection.execute("SELECT max(run_id) FROM runs").fetchone()[0]
        connection.close()
        console.print(f"reusing {path}")
    else:
        event_id, run_id = fill(path, args.events, args.runs)
        console.print(f"filled {path} in {time.monotonic() - began:.0f} s")
    port = free_port()
    env = {**os.environ, "DASH_TRACE": str(folder / "trace.log"), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headwater",
            "dev",
            "tests.integration.apps.dash:hw",
            "--no-discovery",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{path}",
            "--data-dir",
            str(folder),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        middle = datetime.fromtimestamp((time.time() - 3.5 * 86_400), UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
        pages = {
            "events": "/events",
            "events by name": "/events?name=dash/order.placed",
            "events in a window": f"/events?from={middle}",
            "events 3 days ago": f"/events?to={middle}",
            "events by name, 3 days ago": f"/events?name=dash/sleep&to={middle}",
            "event detail": f"/events/{event_id}",
            "runs": "/runs",
            "runs of a function": "/runs?function=dash-pipeline",
            "runs failed": "/runs?status=Failed",
            "runs of a function, failed": "/runs?function=dash-pipeline&status=Failed",
            "runs of a function, 3 days ago": f"/runs?function=dash-pipeline&to={middle}",
            "runs 3 days ago": f"/runs?to={middle}",
            "runs failed, 3 days ago": f"/runs?status=Failed&to={middle}",
            "runs, older page": "/runs?cursor={cursor}",
            "run detail (timeline)": f"/runs/{run_id}",
            "apps & functions": "/apps",
            "function detail": "/functions/dash-pipeline",
            "replays": "/replays",
        }
        replay_id, cancellation_id = _jobs(base)
        # The filled events carry no `user`; one sent through the API does, sealed, so its page
        # times opening it.
        sent = httpx.post(
            f"{base}/e/bench",
            json={"name": "dash/order.placed", "data": {"order": -1}, "user": {"email": "a@b.c"}},
            timeout=30,
        )
        sent.raise_for_status()
        pages["event detail, user opened"] = f"/events/{sent.json()['ids'][0]}"
        pages["replay job"] = f"/replays/{replay_id}"
        pages["cancellations"] = "/cancellations"
        pages["cancellation job"] = f"/cancellations/{cancellation_id}"
        pages["login"] = "/login"
        cursor = _cursor_in_the_middle(path)
        pages = {label: page.replace("{cursor}", cursor) for label, page in pages.items()}
        results = measure(base, pages, args.requests)
    finally:
        server.terminate()
        server.wait(10)
    table = Table(title=f"Dashboard pages, {args.events:,} events and {args.runs:,} runs in SQLite")
    for column in ("page", "p50 ms", "p99 ms", "KiB", "< 200 ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for label, figures in results.items():
        ok = figures["p99_ms"] < TARGET_MS
        table.add_row(
            label,
            f"{figures['p50_ms']:.1f}",
            f"{figures['p99_ms']:.1f}",
            f"{figures['bytes'] / 1024:.0f}",
            "[green]yes[/]" if ok else "[red]no[/]",
        )
    console.print(table)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"dashboard-{stamp}.json"
    out.write_bytes(
        orjson.dumps(
            {"events": args.events, "runs": args.runs, "pages": results}, option=orjson.OPT_INDENT_2
        )
    )
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
