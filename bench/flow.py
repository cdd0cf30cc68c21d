"""What flow control costs: runs/s of a concurrency-limited function against an unlimited one.

Run: `.venv/bin/python bench/flow.py [--runs 10000] [--keys 100] [--db postgresql://...]
[--rounds 4] [--order random|round-robin|grouped] [--profile FILE]`. Not part of the test suite.

One real server (`headwater dev bench.flow:hw`, as a user starts it, with a fresh data dir and
database; on PostgreSQL a fresh schema, dropped after) runs this module's two functions in its
own process:

* `limited` (event `bench/flow.limited`): `concurrency=Concurrency(2, key="event.data.key")`;
* `unlimited` (event `bench/flow.unlimited`): no flow control at all.

Each has one step that appends `<function> <seq> start|end <epoch ms> <key>` to the trace file
(env `HEADWATER_BENCH_FLOW_TRACE`) around `await asyncio.sleep(0.01)`. The benchmark sends N events
spread over K keys (POST /e/{key}, JSON arrays of at most 500), first for `limited`, then the same
load for `unlimited`, and reads the trace until it has N end lines. From the trace alone it
measures runs/s (N / (last end - first start)) and, for `limited`, the most runs of one key that
were executing at one instant: what the limit promises, measured from what really ran.

Keys are drawn at random by default: the worker runs at most 64 runs at once, so with 100 keys
handed out in turn no key would ever have two runs due together and the limit would never bind
(`--order round-robin` shows that). `--rounds R` repeats both phases, alternating which goes
first, and judges the runs/s over all rounds: on a shared machine one round's ratio moved by
up to 0.3 with the load of other processes and from the second phase meeting a bigger database.

Targets: limited runs/s >= 0.8 x unlimited runs/s, and exactly 2 runs of one key at most at once
(the limit, reached and never passed). The exit status is 1 if either is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from headwater import Concurrency, Headwater
from headwater.sdk.context import Context

ROOT: Final = Path(__file__).resolve().parent.parent
#: The console script next to this interpreter (`.venv/bin/headwater` when run as documented).
HEADWATER: Final = Path(sys.executable).with_name("headwater")
APP: Final = "bench.flow:hw"
TRACE_ENV: Final = "HEADWATER_BENCH_FLOW_TRACE"
EVENT_KEY: Final = "bench-flow"
LIMIT: Final = 2
WORK_S: Final = 0.01
MAX_BATCH: Final = 500
FINAL: Final = frozenset({"Completed", "Failed", "Cancelled", "Skipped"})
TARGET_RATIO: Final = 0.8

console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


# -- the app, run by the server (`headwater dev bench.flow:hw`) ---------------------------------

hw = Headwater(app_id="bench-flow")


_trace_fd: int | None = None


def _trace(function: str, seq: object, what: str, key: object) -> None:
    """Appends one line with one write(2) to a descriptor kept open: opening the file for each
    line cost ~0.2 ms of the event loop per mark on a loaded machine (measured with --profile),
    a third of a run's engine time, and would blur the difference this benchmark is after."""
    global _trace_fd
    if _trace_fd is None:
        _trace_fd = os.open(os.environ[TRACE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # Microseconds, written as fractional ms: an end and the next start of a key can fall in one
    # millisecond, and whole ms would order them by the tie rule instead of by what happened.
    os.write(_trace_fd, f"{function} {seq} {what} {time.time_ns() / 1e6:.3f} {key}\n".encode())


async def _work(ctx: Context, function: str) -> Any:
    seq, key = ctx.event.data["seq"], ctx.event.data["key"]

    async def body() -> Any:
        _trace(function, seq, "start", key)
        await asyncio.sleep(WORK_S)
        _trace(function, seq, "end", key)
        return seq

    return await ctx.step.run("work", body)


@hw.function(
    id="limited",
    trigger=hw.on_event("bench/flow.limited"),
    concurrency=Concurrency(LIMIT, key="event.data.key"),
)
async def limited(ctx: Context) -> Any:
    return await _work(ctx, "limited")


@hw.function(id="unlimited", trigger=hw.on_event("bench/flow.unlimited"))
async def unlimited(ctx: Context) -> Any:
    return await _work(ctx, "unlimited")


# -- the trace ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    seq: str
    key: str
    start: float
    end: float


class Trace:
    """Reads the trace file as it grows, keeping complete lines, indexed by phase tag."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        #: Phase tag (a seq is `<tag>-<i>`) -> its (seq, what, at, key) marks, in file order.
        self.marks: dict[str, list[tuple[str, str, float, str]]] = defaultdict(list)
        self.ends: dict[str, int] = defaultdict(int)

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            _, seq, what, at, key = line.split()
            tag = seq.rpartition("-")[0]
            self.marks[tag].append((seq, what, float(at), key))
            if what == "end":
                self.ends[tag] += 1

    def spans(self, tag: str) -> tuple[list[Span], int]:
        """Each run's step span, and how many seqs started more than once (retries)."""
        starts: dict[str, tuple[float, str]] = {}
        ends: dict[str, float] = {}
        repeated = 0
        for seq, what, at, key in self.marks[tag]:
            if what == "start":
                repeated += seq in starts
                starts[seq] = (at, key)
            else:
                ends[seq] = at
        spans = [Span(seq, key, at, ends[seq]) for seq, (at, key) in starts.items() if seq in ends]
        return spans, repeated


def max_overlap(spans: list[Span]) -> int:
    """The most spans open at one instant (an end at t closes before a start at t opens)."""
    points = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    open_now = most = 0
    for _, delta in points:
        open_now += delta
        most = max(most, open_now)
    return most


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`headwater dev bench.flow:hw` in a child process, answering GET /health."""

    def __init__(self, db_url: str, data_dir: Path, trace: Path, profile: Path | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        # cProfile sees the event loop's thread only (not the database threads); it writes its
        # stats when the server exits (see stop_signal).
        profiler = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else []
        self.command = [
            *profiler,
            str(HEADWATER),
            "dev",
            APP,
            "--no-discovery",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            db_url,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ]
        self.env = {**os.environ, TRACE_ENV: str(trace)}
        # uvicorn re-raises the signal it stopped on: SIGTERM would kill the process before
        # cProfile writes its stats, SIGINT unwinds as KeyboardInterrupt and lets it.
        self.stop_signal = signal.SIGINT if profile else signal.SIGTERM
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer /health in {timeout}s:\n{self.log()}")

    def log(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> tuple[float, float] | None:
        """User + system CPU time so far of the server process and of its main thread (the
        event loop; the rest is the database threads), from /proc."""
        if self.process is None:
            return None
        pid = self.process.pid
        try:
            process = _proc_cpu_seconds(Path(f"/proc/{pid}/stat"))
            loop = _proc_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))
        except OSError:
            return None
        return process, loop

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _proc_cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def database(url: str | None, data_dir: Path) -> Iterator[str]:
    """SQLite in the data dir, or a fresh schema of the PostgreSQL database (dropped after)."""
    if url is None or url.startswith("sqlite"):
        yield url or f"sqlite:///{data_dir / 'headwater.db'}"
        return
    import psycopg

    schema = f"hw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- one phase: N events for one function ------------------------------------------------------


@dataclass
class Phase:
    function: str
    round_no: int
    runs: int
    send_s: float
    runs_per_s: float
    first_start_to_last_end_s: float
    max_in_flight_per_key: int
    keys_at_max: int
    max_in_flight_overall: int
    #: Runs/s between the 10th and the 90th percentile of end times: without ramp-up and tail.
    steady_runs_per_s: float
    #: The longest time no run ended (a stall: the worker idle, the database or the machine busy).
    longest_gap_ms: float
    #: Step time summed over runs / wall time: how many ran at once on average.
    mean_in_flight: float
    #: Mean step span (the 10 ms sleep plus the event loop's lag in resuming it).
    mean_step_ms: float
    retried: int
    sample_statuses: dict[str, int]
    #: CPU time of the server process during the phase (sending included), and of its
    #: event loop thread alone.
    server_cpu_s: float | None
    loop_cpu_s: float | None


def event_keys(runs: int, keys: int, order: str) -> list[int]:
    """Which key each of the N events gets.

    `random` (seeded): keys drawn uniformly, so runs of one key meet in flight by chance, as in
    real traffic. `round-robin`: k0, k1, ... in turn; with more keys than the worker runs at once
    no two runs of a key are ever due together, so the limit never binds. `grouped`: all events
    of k0, then all of k1, ...: the queue's head is one key, held back at its limit, and the
    worker must find the other keys' runs behind it (the worst case for head-of-line blocking).
    """
    if order == "random":
        draw = random.Random(0)
        return [draw.randrange(keys) for _ in range(runs)]
    if order == "round-robin":
        return [i % keys for i in range(runs)]
    return sorted(i % keys for i in range(runs))


def send_all(
    http: httpx.Client, name: str, runs: int, keys: int, order: str, tag: str
) -> list[str]:
    """N events over `keys` keys, in batches of at most MAX_BATCH; their ids."""
    events = [
        {"name": name, "data": {"key": f"{tag}-k{key}", "seq": f"{tag}-{i}"}}
        for i, key in enumerate(event_keys(runs, keys, order))
    ]
    ids: list[str] = []
    for first in range(0, runs, MAX_BATCH):
        response = http.post(f"/e/{EVENT_KEY}", json=events[first : first + MAX_BATCH])
        if response.status_code != 200:
            raise RuntimeError(
                f"POST /e/{EVENT_KEY} answered {response.status_code}: {response.text}"
            )
        ids.extend(response.json()["ids"])
    if len(ids) != runs:
        raise RuntimeError(f"sent {runs} events but {len(ids)} ids came back")
    return ids


def run_statuses(http: httpx.Client, event_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for event_id in event_ids:
        response = http.get(f"/v1/events/{event_id}/runs")
        response.raise_for_status()
        runs = response.json()["data"]
        if not runs:
            counts["(no run)"] += 1
        for run in runs:
            counts[str(run["status"])] += 1
    return dict(counts)


def steady_rate(ends: list[float]) -> float:
    """Runs/s from the end at the 10th percentile to the one at the 90th."""
    low, high = len(ends) // 10, len(ends) * 9 // 10
    elapsed_ms = ends[high - 1] - ends[low] if high - 1 > low else 0.0
    return (high - 1 - low) / (elapsed_ms / 1000) if elapsed_ms > 0 else float("nan")


def run_phase(
    server: Server,
    http: httpx.Client,
    trace: Trace,
    function: str,
    round_no: int,
    args: argparse.Namespace,
) -> Phase:
    tag = f"{function}.{round_no}.{uuid.uuid4().hex[:6]}"
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    ids = send_all(http, f"bench/flow.{function}", args.runs, args.keys, args.order, tag)
    send_s = time.perf_counter() - started
    deadline = time.monotonic() + args.timeout
    with Progress(
        TextColumn(f"[bold]{function}[/] (round {round_no})"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs ended"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task(function, total=args.runs)
        while True:
            trace.read()
            progress.update(bar, completed=trace.ends[tag])
            if trace.ends[tag] >= args.runs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{function}: {trace.ends[tag]} of {args.runs} runs ended in "
                    f"{args.timeout}s\n{server.log()}"
                )
            if server.process is not None and server.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{server.log()}")
            time.sleep(0.1)
    # The step's end is traced before the run is finalised: wait (not measured) until a sample of
    # runs, the last events sent among them, are final, so the next phase starts on a quiet server.
    sample = random.Random(0).sample(ids, min(args.sample, len(ids))) + ids[-10:]
    with console.status(f"{function}: checking that {len(sample)} sampled runs are final"):
        while True:
            statuses = run_statuses(http, sample)
            if set(statuses) <= FINAL or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    cpu_after = server.cpu_seconds()
    spans, retried = trace.spans(tag)
    if len(spans) != args.runs:
        raise RuntimeError(f"{function}: {len(spans)} complete spans, expected {args.runs}")
    first_start = min(span.start for span in spans)
    last_end = max(span.end for span in spans)
    by_key: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_key[span.key].append(span)
    per_key = {key: max_overlap(key_spans) for key, key_spans in by_key.items()}
    most = max(per_key.values())
    ends = sorted(span.end for span in spans)
    return Phase(
        function=function,
        round_no=round_no,
        runs=args.runs,
        send_s=send_s,
        runs_per_s=args.runs / ((last_end - first_start) / 1000),
        first_start_to_last_end_s=(last_end - first_start) / 1000,
        max_in_flight_per_key=most,
        keys_at_max=sum(1 for value in per_key.values() if value == most),
        max_in_flight_overall=max_overlap(spans),
        steady_runs_per_s=steady_rate(ends),
        longest_gap_ms=max((b - a for a, b in itertools.pairwise(ends)), default=0.0),
        mean_in_flight=sum(span.end - span.start for span in spans) / (last_end - first_start),
        mean_step_ms=sum(span.end - span.start for span in spans) / len(spans),
        retried=retried,
        sample_statuses=statuses,
        server_cpu_s=cpu_after[0] - cpu_before[0] if cpu_after and cpu_before else None,
        loop_cpu_s=cpu_after[1] - cpu_before[1] if cpu_after and cpu_before else None,
    )


# -- the report --------------------------------------------------------------------------------


def report(phases: list[Phase], backend: str, args: argparse.Namespace) -> bool:
    title = f"Flow control cost on {backend}: {args.runs} runs over {args.keys} keys ({args.order})"
    caption = (
        "p10-p90: runs/s between the 10th and 90th percentile end; max gap: longest time no run"
        " ended; max/key: most runs of one key executing at once (keys that reached it);"
        " in flight: mean/max steps executing at once; step: mean step span; CPU (loop): server"
        " CPU time in the phase (its event loop thread's share); sample: statuses of sampled runs"
    )
    table = Table(title=title, caption=caption)
    for name in ("function", "round", "runs/s", "p10-p90", "start→end", "max gap", "send"):
        table.add_column(name, justify="left" if name == "function" else "right")
    for name in ("max/key", "in flight", "step", "CPU (loop)", "CPU/run", "sample"):
        table.add_column(name, justify="left" if name == "sample" else "right")
    for phase in phases:
        cpu = phase.server_cpu_s
        table.add_row(
            phase.function,
            str(phase.round_no),
            f"{phase.runs_per_s:,.0f}",
            f"{phase.steady_runs_per_s:,.0f}",
            f"{phase.first_start_to_last_end_s:.2f} s",
            f"{phase.longest_gap_ms:,.0f} ms",
            f"{phase.send_s:.2f} s",
            f"{phase.max_in_flight_per_key} ({phase.keys_at_max})",
            f"{phase.mean_in_flight:.1f} / {phase.max_in_flight_overall}",
            f"{phase.mean_step_ms:.1f} ms",
            f"{cpu:.1f} ({phase.loop_cpu_s:.1f}) s" if cpu is not None else "?",
            f"{cpu / phase.runs * 1000:.2f} ms" if cpu is not None else "?",
            ", ".join(f"{status} {n}" for status, n in sorted(phase.sample_statuses.items())),
        )
    console.print(table)

    def rate(function: str) -> float:
        mine = [phase for phase in phases if phase.function == function]
        return sum(p.runs for p in mine) / sum(p.first_start_to_last_end_s for p in mine)

    functions = {phase.function for phase in phases}
    if functions != {"limited", "unlimited"}:
        for function in sorted(functions):
            console.print(f"{function}: {rate(function):,.0f} runs/s (no ratio: one phase only)")
        return True
    limited_rate, unlimited_rate = rate("limited"), rate("unlimited")
    ratio = limited_rate / unlimited_rate
    ratio_ok = ratio >= TARGET_RATIO
    most = max(phase.max_in_flight_per_key for phase in phases if phase.function == "limited")
    limit_ok = most == LIMIT
    over = "all rounds: " if args.rounds > 1 else ""
    console.print(
        f"{over}limited: {limited_rate:,.0f} runs/s   unlimited: {unlimited_rate:,.0f} runs/s   "
        f"ratio limited/unlimited: {ratio:.2f} (target >= {TARGET_RATIO}) "
        + ("[green]ok[/]" if ratio_ok else "[red]below target[/]")
    )
    if args.rounds > 1:
        by_round = {(phase.round_no, phase.function): phase.runs_per_s for phase in phases}
        ratios = [
            by_round[(r, "limited")] / by_round[(r, "unlimited")] for r in range(1, args.rounds + 1)
        ]
        console.print("ratio per round: " + ", ".join(f"{r:.2f}" for r in ratios))
    limited_cpu, unlimited_cpu = cpu_per_run(phases, "limited"), cpu_per_run(phases, "unlimited")
    if limited_cpu is not None and unlimited_cpu is not None:
        # Less at the mercy of other processes than wall time: what flow control costs the server.
        console.print(
            f"server CPU per run: limited {limited_cpu:.2f} ms, unlimited {unlimited_cpu:.2f} ms"
            f" ({limited_cpu / unlimited_cpu - 1:+.0%})"
        )
    console.print(
        f"max in flight per key (limited): {most} (limit {LIMIT}) "
        + ("[green]ok[/]" if limit_ok else "[red]differs from the limit[/]")
    )
    retried = sum(phase.retried for phase in phases)
    if retried:
        console.print(f"[yellow]{retried} step(s) started more than once (retried)[/]")
    return ratio_ok and limit_ok


def cpu_per_run(phases: list[Phase], function: str) -> float | None:
    """Server CPU ms per run of this function's phases (sending and storing its events included)."""
    mine = [phase for phase in phases if phase.function == function]
    if not mine or any(phase.server_cpu_s is None for phase in mine):
        return None
    return sum(phase.server_cpu_s or 0.0 for phase in mine) * 1000 / sum(p.runs for p in mine)


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    if not path.exists():
        console.print(f"[red]no profile written at {path}[/]")
        return
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        console.rule(f"server profile ({path}), top {top} by {order}")
        stats.sort_stats(order).print_stats(top)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000, help="events (runs) per function")
    parser.add_argument("--keys", type=int, default=100, help="distinct concurrency keys")
    parser.add_argument(
        "--db",
        default=None,
        help="database: SQLite in a fresh data dir by default, or a PostgreSQL URL "
        "(a fresh schema is made in it and dropped after)",
    )
    parser.add_argument(
        "--order",
        choices=("random", "round-robin", "grouped"),
        default="random",
        help="how events are spread over the keys (see event_keys)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of both phases in one server; odd rounds run limited first, even rounds "
        "unlimited first, so that a later phase's bigger database and the machine's drift "
        "weigh on both (runs/s is then over all rounds)",
    )
    parser.add_argument(
        "--unlimited-first",
        action="store_true",
        help="start each round's alternation with unlimited",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=("limited", "unlimited"),
        help="run only this phase (with --profile, to profile one function's load)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the server under cProfile, write its stats here and print the top functions",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per phase")
    parser.add_argument("--sample", type=int, default=50, help="runs whose status is checked")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (trace, log)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.keys < 1 or args.rounds < 1:
        parser.error("--runs, --keys and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backend = "PostgreSQL" if args.db and args.db.startswith("postgres") else "SQLite"
    data_dir = Path(tempfile.mkdtemp(prefix="headwater-bench-flow-"))
    trace_path = data_dir / "trace.log"
    try:
        with database(args.db, data_dir) as db_url:
            server = Server(db_url, data_dir, trace_path, args.profile)
            with console.status(f"starting headwater dev {APP} on {backend}"):
                server.start()
            try:
                trace = Trace(trace_path)
                with httpx.Client(base_url=server.url, timeout=60) as http:
                    phases = []
                    for round_no in range(1, args.rounds + 1):
                        order = list(args.only or ["limited", "unlimited"])
                        if (round_no % 2 == 0) != args.unlimited_first:
                            order.reverse()
                        for function in order:
                            phases.append(run_phase(server, http, trace, function, round_no, args))
            finally:
                server.stop()
        ok = report(phases, backend, args)
        if args.profile:
            print_profile(args.profile)
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        console.print(f"load average after the run (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
        log = server.log(lines=10_000).splitlines()
        trouble = [line for line in log if any(w in line for w in ("WARNING", "ERROR", "Trace"))]
        if trouble:
            tail = "\n".join(trouble[-20:])
            console.print(
                f"[yellow]server log: {len(trouble)} warning/error lines, last:\n{tail}[/]"
            )
        return 0 if ok else 1
    finally:
        if args.keep:
            console.print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
