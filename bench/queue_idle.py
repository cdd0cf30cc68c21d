"""Does a big delayed queue cost anything? (issue 5, part 7)

Runs the server (SQLite) twice, as a user would: once with an empty queue, once with N delayed
queue items (default 1,000,000 runs due tomorrow, written straight into the database before the
server starts). For each it measures:

- the server's CPU time while idle for `--idle` seconds (from /proc: user + system), which must
  stay near zero however many items wait;
- the latency of single runs (event sent → run Completed, polled every 2 ms), p50 and p99;
- the time to run a burst of quick runs.

Prints both and the ratios (loaded / empty). Usage: `.venv/bin/python bench/queue_idle.py
[--delayed 1000000] [--idle 10] [--runs 50] [--burst 500]`.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import ROOT, Server, free_port

APP = "bench.queue_app:hw"
DAY_MS = 86_400_000
console = Console()


@dataclass(frozen=True)
class Result:
    delayed: int
    idle_cpu_s: float
    idle_s: float
    p50_ms: float
    p99_ms: float
    burst_runs_per_s: float


def server_for(data_dir: Path) -> Server:
    port = free_port()
    command = [
        str(ROOT / ".venv" / "bin" / "headwater"),
        "dev",
        APP,
        "--no-discovery",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    return Server(command, port, data_dir / "server.log")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def fill_delayed(db_path: Path, count: int) -> None:
    """Write `count` Queued runs with their queue items, due a day from now, in one transaction
    (the rows the engine itself would write for runs of `bench-delayed`)."""
    now = int(time.time() * 1000)
    chunk = 50_000
    with sqlite3.connect(db_path) as connection, Progress(console=console) as progress:
        task = progress.add_task(f"writing {count:,} delayed queue items", total=count)
        for start in range(0, count, chunk):
            ids = range(start, min(count, start + chunk))
            connection.executemany(
                "INSERT INTO runs (run_id, function_id, status, created_at) VALUES (?, ?, ?, ?)",
                [(f"D{i:025d}", "bench-delayed", "Queued", now) for i in ids],
            )
            connection.executemany(
                "INSERT INTO run_events (run_id, position, event_id) VALUES (?, 0, ?)",
                [(f"D{i:025d}", f"E{i:025d}") for i in ids],
            )
            connection.executemany(
                "INSERT INTO queue (item_id, run_id, due_at, attempt) VALUES (?, ?, ?, 0)",
                [(f"Q{i:025d}", f"D{i:025d}", now + DAY_MS + i) for i in ids],
            )
            progress.advance(task, len(ids))
        connection.commit()


def run_latency(client: httpx.Client) -> float:
    started = time.perf_counter()
    event_id = client.post("/e/bench", json={"name": "bench/quick"}).json()["ids"][0]
    while True:
        runs = client.get(f"/v1/events/{event_id}/runs").json()["data"]
        if runs and runs[0]["status"] == "Completed":
            return (time.perf_counter() - started) * 1000
        time.sleep(0.002)


def burst(client: httpx.Client, count: int) -> float:
    started = time.perf_counter()
    ids = client.post("/e/bench", json=[{"name": "bench/quick"} for _ in range(count)]).json()[
        "ids"
    ]
    pending = list(ids)
    while pending:
        runs = client.get(f"/v1/events/{pending[0]}/runs").json()["data"]
        if runs and runs[0]["status"] == "Completed":
            pending.pop(0)
        else:
            time.sleep(0.01)
    return count / (time.perf_counter() - started)


def measure(delayed: int, options: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="hw-queue-") as folder:
        data_dir = Path(folder)
        if delayed:
            first = server_for(data_dir).start()  # creates the database and its tables
            first.stop()
            fill_delayed(data_dir / "headwater.db", delayed)
        server = server_for(data_dir).start(timeout=120)
        try:
            assert server.process is not None
            time.sleep(2)  # start-up work (schedules, apps) is not idling
            before = cpu_seconds(server.process.pid)
            with console.status(f"idle for {options.idle} s with {delayed:,} delayed items"):
                time.sleep(options.idle)
            idle_cpu = cpu_seconds(server.process.pid) - before
            with httpx.Client(base_url=server.url, timeout=60) as client:
                run_latency(client)  # warm up
                latencies = sorted(run_latency(client) for _ in range(options.runs))
                rate = burst(client, options.burst)
            return Result(
                delayed=delayed,
                idle_cpu_s=idle_cpu,
                idle_s=options.idle,
                p50_ms=statistics.median(latencies),
                p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                burst_runs_per_s=rate,
            )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delayed", type=int, default=1_000_000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=500)
    options = parser.parse_args()
    empty = measure(0, options)
    loaded = measure(options.delayed, options)
    table = Table(title="a big delayed queue (SQLite)")
    table.add_column("measurement")
    table.add_column("empty queue", justify="right")
    table.add_column(f"{options.delayed:,} delayed", justify="right")
    table.add_column("loaded / empty", justify="right")
    table.add_row(
        f"server CPU while idle {options.idle:.0f} s",
        f"{empty.idle_cpu_s:.3f} s ({empty.idle_cpu_s / empty.idle_s:.2%})",
        f"{loaded.idle_cpu_s:.3f} s ({loaded.idle_cpu_s / loaded.idle_s:.2%})",
        "",
    )
    table.add_row(
        "single run latency p50",
        f"{empty.p50_ms:.1f} ms",
        f"{loaded.p50_ms:.1f} ms",
        f"{loaded.p50_ms / empty.p50_ms:.2f}",
    )
    table.add_row(
        "single run latency p99",
        f"{empty.p99_ms:.1f} ms",
        f"{loaded.p99_ms:.1f} ms",
        f"{loaded.p99_ms / empty.p99_ms:.2f}",
    )
    table.add_row(
        f"burst of {options.burst} runs",
        f"{empty.burst_runs_per_s:,.0f} runs/s",
        f"{loaded.burst_runs_per_s:,.0f} runs/s",
        f"{loaded.burst_runs_per_s / empty.burst_runs_per_s:.2f}",
    )
    console.print(table)


if __name__ == "__main__":
    main()
