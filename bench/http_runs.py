"""Benchmark of runs over HTTP: a 3-step function served by the official Inngest Python SDK
(FastAPI) and by our `hw.serve()` (Starlette), each driven by a Headwater dev server.

Run: `.venv/bin/python bench/http_runs.py [--runs 1000] [--only official|headwater]
[--db sqlite|postgresql://...]` (`make bench-http` runs it). Not part of the test suite.

For each app, in turn: a fresh `headwater dev` (SQLite by default) syncs the app (`-u`), N events
are sent in batches of 100, and the runs are awaited. Each step returns the time it ran, so:

* runs/s: N over the time from the first event accepted to the last run ended;
* step latency: from one step's run to the next step's run of the same run (the server records
  the step, then calls the app again), p50 and p99 over all 2N gaps;
* first step: from the event's `ts` to the first step's run (queueing included).

PyPI `inngest` and `fastapi` are installed with `pip --target` into a cache folder (`--sdk-dir`),
never into the venv. Both apps run under the venv's uvicorn in their own process.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
from rich.console import Console
from rich.table import Table

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"
DEFAULT_SDK_DIR: Final = Path(tempfile.gettempdir()) / "headwater-bench-inngest-py"
BATCH: Final = 100
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

OFFICIAL_APP: Final = """\
import time

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="bench-official")


@client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="bench/three"))
async def three(ctx):
    async def now():
        return time.time()

    a = await ctx.step.run("a", now)
    b = await ctx.step.run("b", now)
    c = await ctx.step.run("c", now)
    return [a, b, c]


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [three])
"""

HEADWATER_APP: Final = """\
import time

from starlette.applications import Starlette
from starlette.routing import Route

from headwater import Headwater

hw = Headwater(app_id="bench-headwater")


@hw.function(id="three", trigger=hw.on_event("bench/three"))
async def three(ctx):
    a = await ctx.step.run("a", time.time)
    b = await ctx.step.run("b", time.time)
    c = await ctx.step.run("c", time.time)
    return [a, b, c]


app = Starlette(routes=[Route("/api/inngest", hw.serve(), methods=["GET", "PUT", "POST"])])
"""


@dataclass
class Result:
    target: str
    runs: int
    completed: int
    seconds: float
    runs_per_s: float
    step_p50_ms: float
    step_p99_ms: float
    first_step_p50_ms: float
    first_step_p99_ms: float
    server_cpu_s: float = 0.0
    app_cpu_s: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_official_sdk(folder: Path) -> Path:
    """`inngest` and `fastapi` in `folder/site` (kept between runs)."""
    site = folder / "site"
    if not any(site.glob("inngest-*.dist-info")):
        console.print(f"installing inngest + fastapi into {site} ...")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site)]
        subprocess.run([*command, "inngest", "fastapi"], check=True, timeout=600)
    return site


@contextmanager
def process(
    command: list[str], *, cwd: Path, env: dict[str, str], log: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited:\n{log.read_text()[-2000:]}")
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:4]} did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def measure(
    target: str, app_source: str, app_env: dict[str, str], options: argparse.Namespace
) -> Result:
    work = Path(tempfile.mkdtemp(prefix=f"hw-bench-{target}-"))
    (work / "bench_app.py").write_text(app_source)
    app_port, server_port = free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    server_url = f"http://127.0.0.1:{server_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "HEADWATER_"))}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    db = options.db if options.db != "sqlite" else f"sqlite:///{work / 'bench.db'}"
    server_cmd = [sys.executable, "-m", "headwater", "dev", "--port", str(server_port)]
    server_cmd += ["--data-dir", str(work), "--db", db, "--log-level", "warning"]
    server_cmd += ["--no-discovery", "-u", app_url]
    app_cmd = [sys.executable, "-m", "uvicorn", "bench_app:app", "--port", str(app_port)]
    app_cmd += ["--log-level", "warning", "--no-access-log"]
    with (
        process(
            app_cmd,
            cwd=work,
            env={**env, **app_env, "INNGEST_DEV": server_url},
            log=work / "app.log",
            ready_url=f"http://127.0.0.1:{app_port}/",
        ) as app,
        process(
            server_cmd, cwd=ROOT, env=env, log=work / "server.log", ready_url=f"{server_url}/health"
        ) as server,
        httpx.Client(base_url=server_url, timeout=60) as http,
    ):
        deadline = time.monotonic() + 30
        while not http.get("/v1/apps").json()["data"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target}: the app did not sync")
            time.sleep(0.1)
        cpu_before = cpu_seconds(server.pid), cpu_seconds(app.pid)
        console.print(f"[bold]{target}[/]: sending {options.runs} events ...")
        ids: list[str] = []
        for start in range(0, options.runs, BATCH):
            count = min(BATCH, options.runs - start)
            events = [{"name": "bench/three", "data": {"i": start + i}} for i in range(count)]
            reply = http.post("/e/bench", json=events)
            reply.raise_for_status()
            ids += reply.json()["ids"]
        runs = wait_for_runs(http, ids, options.timeout)
        result = summarize(target, runs, options.runs)
        result.server_cpu_s = round(cpu_seconds(server.pid) - cpu_before[0], 2)
        result.app_cpu_s = round(cpu_seconds(app.pid) - cpu_before[1], 2)
    return result


def wait_for_runs(http: httpx.Client, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """The runs of `ids` once ended; polls the newest events until they are done, then sweeps."""
    deadline = time.monotonic() + timeout
    tail = ids[-10:]
    while time.monotonic() < deadline:
        done = 0
        for event_id in tail:
            runs = http.get(f"/v1/events/{event_id}/runs").json()["data"]
            if runs and runs[0]["status"] in {"Completed", "Failed", "Cancelled"}:
                done += 1
        if done == len(tail):
            break
        time.sleep(0.25)
    found: list[dict[str, Any]] = []
    for event_id in ids:
        while True:
            runs = http.get(f"/v1/events/{event_id}/runs").json()["data"]
            ended = runs and runs[0]["status"] in {"Completed", "Failed", "Cancelled"}
            if ended or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if runs:
            event = http.get(f"/v1/events/{event_id}").json()["data"]
            found.append({**runs[0], "event_ts": event["ts"]})
    return found


def summarize(target: str, runs: list[dict[str, Any]], sent: int) -> Result:
    completed = [r for r in runs if r["status"] == "Completed"]
    gaps: list[float] = []
    first: list[float] = []
    for run in completed:
        a, b, c = (t * 1000 for t in run["output"])
        gaps += [b - a, c - b]
        first.append(a - run["event_ts"])
    start = min((r["event_ts"] for r in completed), default=0)
    end = max((parse_ms(r["ended_at"]) for r in completed), default=0)
    seconds = max(end - start, 1) / 1000
    return Result(
        target=target,
        runs=sent,
        completed=len(completed),
        seconds=round(seconds, 2),
        runs_per_s=round(len(completed) / seconds, 1),
        step_p50_ms=round(percentile(gaps, 0.5), 1),
        step_p99_ms=round(percentile(gaps, 0.99), 1),
        first_step_p50_ms=round(percentile(first, 0.5), 1),
        first_step_p99_ms=round(percentile(first, 0.99), 1),
    )


def table(results: Sequence[Result]) -> Table:
    out = Table(title="3-step runs over HTTP (Headwater dev server)")
    for column in (
        "app",
        "runs (completed)",
        "seconds",
        "runs/s",
        "step p50 ms",
        "step p99 ms",
        "first step p50 ms",
        "first step p99 ms",
        "server CPU s",
        "app CPU s",
    ):
        out.add_column(column, justify="right" if column != "app" else "left")
    for r in results:
        out.add_row(
            r.target,
            f"{r.runs} ({r.completed})",
            f"{r.seconds:.2f}",
            f"{r.runs_per_s:,.1f}",
            f"{r.step_p50_ms:.1f}",
            f"{r.step_p99_ms:.1f}",
            f"{r.first_step_p50_ms:.1f}",
            f"{r.first_step_p99_ms:.1f}",
            f"{r.server_cpu_s:.1f}",
            f"{r.app_cpu_s:.1f}",
        )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000, help="runs per app (default 1000)")
    parser.add_argument("--only", choices=["official", "headwater"], help="one app only")
    parser.add_argument("--db", default="sqlite", help="sqlite (default) or a PostgreSQL URL")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the runs")
    parser.add_argument("--sdk-dir", type=Path, default=DEFAULT_SDK_DIR, help="PyPI install cache")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    results: list[Result] = []
    if options.only in (None, "official"):
        site = install_official_sdk(options.sdk_dir)
        results.append(
            measure(
                "official Python SDK (FastAPI)", OFFICIAL_APP, {"PYTHONPATH": str(site)}, options
            )
        )
    if options.only in (None, "headwater"):
        results.append(measure("headwater hw.serve() (Starlette)", HEADWATER_APP, {}, options))
    console.print(table(results))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"http_runs-{stamp}.json"
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "db": options.db}
    path.write_bytes(
        orjson.dumps(
            {"machine": machine, "results": [asdict(r) for r in results]},
            option=orjson.OPT_INDENT_2,
        )
    )
    console.print(f"results written to {path.relative_to(ROOT)}")
    return 0 if all(r.completed == r.runs for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
