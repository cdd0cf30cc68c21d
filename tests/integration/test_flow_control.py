"""Flow control end to end, on both backends: a real server runs tests/integration/apps/flow.py and
each test measures the property its control promises from what really ran (the app's trace of
step start and end times), not from what the server says it did."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, fresh_postgres_schema
from tests.harness import RunningServer

APP = "tests.integration.apps.flow:hw"
FINAL = {"Completed", "Failed", "Cancelled", "Skipped"}


@dataclass(frozen=True)
class Mark:
    function: str
    seq: str
    what: str
    at: int
    pid: int


class Flow:
    def __init__(self, servers: list[RunningServer], trace: Path) -> None:
        self.servers = servers
        self.trace = trace
        self.clients = [httpx.Client(base_url=s.url, timeout=30) for s in servers]
        self.http = self.clients[0]

    def send(
        self, name: str, data: dict[str, Any], *, via: int = 0, user: dict[str, Any] | None = None
    ) -> str:
        event = (
            {"name": name, "data": data}
            if user is None
            else {"name": name, "data": data, "user": user}
        )
        response = self.clients[via].post("/e/k", json=event)
        assert response.status_code == 200, response.text
        return str(response.json()["ids"][0])

    def send_many(
        self, name: str, datas: list[dict[str, Any]], users: list[dict[str, Any]] | None = None
    ) -> list[str]:
        """Send each event in its own request, all at once, alternating between the servers
        (`users[i]`, if given, is the `user` of event i)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [
                pool.submit(
                    self.send,
                    name,
                    data,
                    via=i % len(self.clients),
                    user=users[i] if users is not None else None,
                )
                for i, data in enumerate(datas)
            ]
            return [future.result() for future in futures]

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        data = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
        assert isinstance(data, list)
        return data

    def wait_final(self, event_ids: list[str], *, count: int, timeout: float = 30) -> list[dict]:
        """The distinct runs of these events, once there are `count` of them, all final."""
        deadline = time.monotonic() + timeout
        runs: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            runs = {run["run_id"]: run for e in event_ids for run in self.runs(e)}
            if len(runs) >= count and all(run["status"] in FINAL for run in runs.values()):
                return sorted(runs.values(), key=lambda run: run["run_id"])
            time.sleep(0.1)
        logs = "\n".join(server.log()[-3000:] for server in self.servers)
        raise AssertionError(f"runs did not finish: {list(runs.values())}\n{logs}")

    def marks(self, function: str) -> list[Mark]:
        if not self.trace.exists():
            return []
        marks = []
        for line in self.trace.read_text().splitlines():
            name, seq, what, at, pid = line.split()
            if name == function:
                marks.append(Mark(name, seq, what, int(at), int(pid)))
        return sorted(marks, key=lambda mark: mark.at)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def start_servers(data_dir: Path, db_url: str | None, count: int = 1) -> list[RunningServer]:
    env = {"FLOW_TRACE": str(data_dir / "trace.log")}
    servers = []
    for _ in range(count):
        servers.append(RunningServer(data_dir, db_url=db_url, env=env, extra_args=[APP]).start())
    return servers


@pytest.fixture(scope="module", params=BACKENDS)
def flow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flow]:
    data_dir = tmp_path_factory.mktemp("flow")
    with fresh_postgres_schema() if request.param == "postgres" else _no_schema() as url:
        servers = start_servers(data_dir, url)
        flow = Flow(servers, data_dir / "trace.log")
        try:
            yield flow
        finally:
            flow.close()
            for server in servers:
                server.stop()


class _no_schema:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def tag() -> str:
    return uuid.uuid4().hex[:8]


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t opens)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = most = 0
    for _, delta in points:
        open_now += delta
        most = max(most, open_now)
    return most


def intervals(marks: list[Mark], seqs: set[str]) -> dict[str, tuple[int, int]]:
    starts = {m.seq: m.at for m in marks if m.what == "start" and m.seq in seqs}
    ends = {m.seq: m.at for m in marks if m.what == "end" and m.seq in seqs}
    return {seq: (starts[seq], ends[seq]) for seq in starts}


def replay_all_and_wait(flow: Flow, originals: list[dict[str, Any]]) -> None:
    """Replay every run at once (one request each, side by side), then wait until every replay
    has completed."""
    with ThreadPoolExecutor(max_workers=len(originals)) as pool:
        replies = list(
            pool.map(lambda r: flow.http.post(f"/v1/runs/{r['run_id']}/replay"), originals)
        )
    assert [reply.status_code for reply in replies] == [201] * len(originals), replies[0].text
    replay_ids = [reply.json()["data"]["run_id"] for reply in replies]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = [flow.http.get(f"/v1/runs/{i}").json()["data"]["status"] for i in replay_ids]
        if all(status in FINAL for status in statuses):
            break
        time.sleep(0.1)
    assert statuses == ["Completed"] * len(originals)


def test_concurrency_limits_each_key_and_a_busy_key_does_not_starve_others(flow: Flow) -> None:
    run = tag()
    busy, quiet = f"{run}-busy", f"{run}-quiet"
    datas = [{"customer": busy, "seq": f"{run}-b{i}", "work": 0.3} for i in range(8)]
    datas += [{"customer": quiet, "seq": f"{run}-q{i}", "work": 0.3} for i in range(2)]
    ids = flow.send_many("flow/concurrency", datas)
    runs = flow.wait_final(ids, count=10)
    assert {r["status"] for r in runs} == {"Completed"}
    marks = flow.marks("per-customer")
    busy_spans = intervals(marks, {d["seq"] for d in datas if d["customer"] == busy})
    quiet_spans = intervals(marks, {d["seq"] for d in datas if d["customer"] == quiet})
    assert len(busy_spans) == 8 and len(quiet_spans) == 2
    # A step's record spans its body (0.3 s), which the run's timeline shows.
    steps = flow.http.get(f"/v1/runs/{runs[0]['run_id']}/steps").json()["data"]
    (work,) = [step for step in steps if step["name"] == "work"]
    assert _ms(work["ended_at"]) - _ms(work["started_at"]) >= 290, work
    # The promise: never more than the limit of one key executing at once ...
    assert max_overlap(list(busy_spans.values())) == 2
    assert max_overlap(list(quiet_spans.values())) <= 2
    # ... and the quiet key's runs do not wait for the busy key's backlog (8 runs, 2 at a time,
    # 0.3 s each: the backlog takes 1.2 s; the quiet ones start within the first round).
    first_busy = min(start for start, _ in busy_spans.values())
    assert max(start for start, _ in quiet_spans.values()) - first_busy < 600


def test_an_account_scoped_limit_is_shared_by_every_function_using_the_key(flow: Flow) -> None:
    run = tag()
    exports = [{"tenant": run, "seq": f"{run}-e{i}", "work": 0.2} for i in range(3)]
    imports = [{"tenant": run, "seq": f"{run}-i{i}", "work": 0.2} for i in range(3)]
    ids = flow.send_many("flow/tenant.export", exports) + flow.send_many(
        "flow/tenant.import", imports
    )
    flow.wait_final(ids, count=6)
    spans = intervals(flow.marks("tenant"), {d["seq"] for d in exports + imports})
    assert len(spans) == 6
    assert max_overlap(list(spans.values())) == 1  # limit 1 across both functions


def test_an_env_scoped_limit_is_shared_by_every_function_using_the_key(flow: Flow) -> None:
    # One environment per server: scope env shares a key across functions, as account does.
    run = tag()
    exports = [{"tenant": run, "seq": f"{run}-e{i}", "work": 0.2} for i in range(3)]
    imports = [{"tenant": run, "seq": f"{run}-i{i}", "work": 0.2} for i in range(3)]
    other = [{"tenant": f"{run}-other", "seq": f"{run}-o", "work": 0.2}]
    ids = flow.send_many("flow/env.export", exports + other)
    ids += flow.send_many("flow/env.import", imports)
    flow.wait_final(ids, count=7)
    spans = intervals(flow.marks("env"), {d["seq"] for d in exports + imports})
    assert len(spans) == 6
    assert max_overlap(list(spans.values())) == 1  # limit 1 across both functions
    # Another tenant's run did not wait for this tenant's six (1.2 s of work one at a time)
    (other_span,) = intervals(flow.marks("env"), {f"{run}-o"}).values()
    assert other_span[0] - min(start for start, _ in spans.values()) < 800


def test_two_limits_are_both_enforced(flow: Flow) -> None:
    # Given runs of 3 customers, 2 each, under limits of 1 per customer and 2 for the function
    run = tag()
    datas = [
        {"customer": f"{run}-{c}", "seq": f"{run}-{c}{i}", "work": 0.3}
        for i in range(2)
        for c in "abc"
    ]
    ids = flow.send_many("flow/two-limits", datas)
    runs = flow.wait_final(ids, count=6)
    assert {r["status"] for r in runs} == {"Completed"}
    spans = intervals(flow.marks("two-limits"), {d["seq"] for d in datas})
    assert len(spans) == 6
    # Then no customer ever had two at once, and the function never more than two (but two)
    for c in "abc":
        mine = [span for seq, span in spans.items() if seq.startswith(f"{run}-{c}")]
        assert max_overlap(mine) == 1, (c, spans)
    assert max_overlap(list(spans.values())) == 2, spans


def test_replays_obey_the_functions_concurrency_limit(flow: Flow) -> None:
    run = tag()
    datas = [{"customer": run, "seq": f"{run}-{i}", "work": 0.2} for i in range(6)]
    ids = flow.send_many("flow/concurrency", datas)
    originals = flow.wait_final(ids, count=6)
    replayed_after = int(time.time() * 1000)
    replay_all_and_wait(flow, originals)
    marks = [m for m in flow.marks("per-customer") if m.at >= replayed_after]
    spans = intervals(marks, {d["seq"] for d in datas})
    assert len(spans) == 6
    assert max_overlap(list(spans.values())) == 2


def test_a_sleeping_run_does_not_hold_a_concurrency_slot(flow: Flow) -> None:
    run = tag()
    ids = flow.send_many("flow/sleepy", [{"seq": f"{run}-{i}"} for i in range(3)])
    flow.wait_final(ids, count=3)
    marks = [m for m in flow.marks("sleepy") if m.seq.startswith(run)]
    befores = sorted(m.at for m in marks if m.what == "before")
    afters = sorted(m.at for m in marks if m.what == "after")
    assert len(befores) == len(afters) == 3
    # With limit 1 and a 1 s sleep between the steps, all three first steps run while the first
    # run sleeps: had sleeping runs counted, they would be 1 s apart.
    assert befores[-1] < afters[0]


def test_a_run_waiting_for_an_event_does_not_hold_a_concurrency_slot(flow: Flow) -> None:
    run = tag()
    ids = flow.send_many("flow/waiting", [{"seq": f"{run}-{i}"} for i in range(3)])
    flow.wait_final(ids, count=3)
    marks = [m for m in flow.marks("waiting") if m.seq.startswith(run)]
    befores = sorted(m.at for m in marks if m.what == "before")
    afters = sorted(m.at for m in marks if m.what == "after")
    assert len(befores) == len(afters) == 3
    # With limit 1 and a 1 s wait between the steps, all three first steps run while the first
    # run waits: had waiting runs counted, they would be 1 s apart.
    assert befores[-1] < afters[0]


def test_throttle_delays_starts_to_the_rate_and_drops_nothing(flow: Flow) -> None:
    run = tag()
    ids = flow.send_many("flow/throttle", [{"seq": f"{run}-{i}"} for i in range(6)])
    runs = flow.wait_final(ids, count=6)
    assert [r["status"] for r in runs] == ["Completed"] * 6  # delayed, never dropped
    assert len([m for m in flow.marks("throttled") if m.seq.startswith(run)]) == 12  # all ran
    # A run starts when it is claimed (`run_started_at`): what the throttle admits. (The step's
    # own start adds the execution's latency, which varies by a few hundred ms on a busy box.)
    starts = sorted(_ms(r["run_started_at"]) for r in runs)
    interval = 500
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            window = starts[j] - starts[i]
            assert j - i + 1 <= 2 + (window + 5) / interval, starts
    assert starts[-1] - starts[0] >= 4 * interval - 100  # the last four waited their turn


def test_a_throttle_key_throttles_each_key_separately(flow: Flow) -> None:
    # Given two starts queued for key A (1 per 2 s), then one for key B
    run = tag()
    a_ids = [
        flow.send("flow/throttle.keyed", {"key": f"{run}-a", "seq": f"{run}-a{i}"})
        for i in range(2)
    ]
    b_id = flow.send("flow/throttle.keyed", {"key": f"{run}-b", "seq": f"{run}-b0"})
    runs = flow.wait_final([*a_ids, b_id], count=3)
    assert [r["status"] for r in runs] == ["Completed"] * 3
    (a0,), (a1,), (b0,) = flow.runs(a_ids[0]), flow.runs(a_ids[1]), flow.runs(b_id)
    # Then A's second start waited for A's rate ...
    assert _ms(a1["run_started_at"]) - _ms(a0["run_started_at"]) >= 2_000 - 5
    # ... while B's started at once, not behind A's (one throttle for both would start it 2 s
    # after A's first)
    assert _ms(b0["run_started_at"]) - _ms(a0["run_started_at"]) < 1_500


def test_rate_limit_drops_excess_events_per_key_as_skipped_runs(flow: Flow) -> None:
    run = tag()
    ids = [flow.send("flow/rate", {"user": f"{run}-a", "seq": f"{run}-a{i}"}) for i in range(5)]
    ids.append(flow.send("flow/rate", {"user": f"{run}-b", "seq": f"{run}-b0"}))
    runs = flow.wait_final(ids, count=6)
    statuses = [flow.runs(event_id)[0]["status"] for event_id in ids]
    assert statuses == ["Completed", "Completed", "Skipped", "Skipped", "Skipped", "Completed"]
    skipped = [r for r in runs if r["status"] == "Skipped"]
    assert {r.get("reason") for r in skipped} == {"rate limited"}, skipped


def test_debounce_runs_once_per_quiet_period_with_the_last_event(flow: Flow) -> None:
    run = tag()
    ids = []
    for i in range(4):
        ids.append(flow.send("flow/debounce", {"doc": run, "seq": f"{run}-{i}"}))
        time.sleep(0.3)  # less than the 1 s period: each event pushes the start back
    (only,) = flow.wait_final(ids, count=1)
    assert only["status"] == "Completed"
    assert only["output"] == {"seq": f"{run}-3", "events": 1}
    assert flow.runs(ids[-1]) and not flow.runs(ids[0])  # the run holds the last event
    (start,) = [m.at for m in flow.marks("debounced") if m.seq == f"{run}-3" and m.what == "start"]
    assert start - _ms(only["created_at"]) >= 0.3 * 3 * 1000 + 1000 - 100  # a quiet second
    # Another quiet period, another run.
    later = flow.send("flow/debounce", {"doc": run, "seq": f"{run}-later"})
    (second,) = flow.wait_final([later], count=1)
    assert second["run_id"] != only["run_id"] and second["output"]["seq"] == f"{run}-later"


def test_a_debounce_timeout_starts_the_run_with_the_last_event_despite_a_steady_stream(
    flow: Flow,
) -> None:
    # Given events every 0.3 s for 4 s: each would push a 1 s quiet period back, for ever
    run = tag()
    ids: list[str] = []
    sending: list[tuple[float, float]] = []  # when each send began and returned (epoch ms)
    for i in range(14):
        began = time.time() * 1000
        ids.append(flow.send("flow/debounce.max", {"doc": run, "seq": f"{run}-{i}"}))
        sending.append((began, time.time() * 1000))
        time.sleep(0.3)
    runs = flow.wait_final(ids, count=1)  # every event is in: each run it made is listed
    assert {r["status"] for r in runs} == {"Completed"}
    first = min(runs, key=lambda r: _ms(r["run_started_at"]))
    started = _ms(first["run_started_at"])
    # Then the first run starts at its 2 s timeout after its first event, not after the stream
    assert 2_000 - 50 <= started - _ms(first["created_at"]) <= 2_000 + 2_000, first
    assert sending[-1][0] > started  # the stream was still going
    # ... with the last event received before it started (one event, not the first)
    k = int(first["output"]["seq"].rsplit("-", 1)[1])
    assert first["output"]["events"] == 1 and k > 0
    received = [i for i, (_, returned) in enumerate(sending) if returned < started]
    assert k >= max(received), (k, started, sending)
    # The events after it went to a later run, which has the last of them
    assert f"{run}-13" in {r["output"]["seq"] for r in runs if r is not first}


def test_batches_fill_to_max_size_and_the_rest_starts_at_the_timeout(flow: Flow) -> None:
    run = tag()
    sent_at = time.time()
    ids = [flow.send("flow/batch", {"group": run, "seq": i}) for i in range(7)]
    runs = flow.wait_final(ids, count=3)
    outputs = sorted((r["output"] for r in runs), key=lambda seqs: seqs[0])
    assert outputs == [[0, 1, 2], [3, 4, 5], [6]]
    (last,) = [r for r in runs if r["output"] == [6]]
    started = [m.at for m in flow.marks("batched") if m.what == "start" and m.seq == "6"]
    assert started and started[0] / 1000 - sent_at >= 1.0 - 0.05  # the 1 s timeout, not sooner
    assert last["status"] == "Completed"


def test_a_lone_events_batch_starts_at_the_timeout_after_that_event(flow: Flow) -> None:
    # Given one event for a batch of 3 with a 1 s timeout, sent well after any other
    run = tag()
    before = time.time() * 1000
    event_id = flow.send("flow/batch", {"group": run, "seq": f"{run}-alone"})
    (only,) = flow.wait_final([event_id], count=1)
    assert only["output"] == [f"{run}-alone"]
    (started,) = [
        m.at for m in flow.marks("batched") if m.what == "start" and m.seq == f"{run}-alone"
    ]
    # Then its batch starts no sooner than the timeout after the event arrived, and not much later
    assert _ms(only["run_started_at"]) - _ms(only["created_at"]) >= 1_000 - 5, only
    assert started - before <= 1_000 + 3_000


def test_a_batch_key_keeps_each_keys_events_in_batches_of_their_own(flow: Flow) -> None:
    # Given events of two keys, interleaved
    run = tag()
    ids = []
    for i in range(3):
        for group in ("x", "y"):
            ids.append(flow.send("flow/batch", {"group": f"{run}-{group}", "seq": f"{group}{i}"}))
    runs = flow.wait_final(ids, count=2)
    # Then each key's events fill a batch of their own: no batch mixes keys
    assert sorted(r["output"] for r in runs) == [["x0", "x1", "x2"], ["y0", "y1", "y2"]]


def test_an_event_the_batch_if_rejects_runs_alone_at_once(flow: Flow) -> None:
    # Given a batch (up to 10, 3 s) open with one event, then an urgent event its `if` rejects,
    # then another batchable one
    run = tag()
    first = flow.send("flow/batch.if", {"seq": f"{run}-b0"})
    urgent = flow.send("flow/batch.if", {"seq": f"{run}-u", "urgent": True})
    last = flow.send("flow/batch.if", {"seq": f"{run}-b1"})
    runs = flow.wait_final([first, urgent, last], count=2)
    assert sorted(r["output"] for r in runs) == [[f"{run}-b0", f"{run}-b1"], [f"{run}-u"]]
    # Then the urgent one ran alone, without waiting for the batch's timeout
    (alone,) = flow.runs(urgent)
    (batch,) = flow.runs(first)
    assert _ms(alone["run_started_at"]) - _ms(alone["created_at"]) < 2_000, alone
    assert _ms(batch["run_started_at"]) - _ms(batch["created_at"]) >= 3_000 - 5, batch


def test_a_higher_priority_run_starts_before_lower_ones_queued_earlier(flow: Flow) -> None:
    run = tag()
    blocker = flow.send("flow/priority", {"seq": f"{run}-blocker", "work": 0.8, "priority": 0})
    time.sleep(0.3)  # the blocker holds the only slot; the others queue behind it
    low = [flow.send("flow/priority", {"seq": f"{run}-low{i}", "priority": 0}) for i in range(3)]
    high = flow.send("flow/priority", {"seq": f"{run}-high", "priority": 60})
    flow.wait_final([blocker, *low, high], count=5)
    order = [
        m.seq for m in flow.marks("prioritised") if m.what == "start" and m.seq.startswith(run)
    ]
    assert order == [f"{run}-blocker", f"{run}-high", f"{run}-low0", f"{run}-low1", f"{run}-low2"]


def test_singleton_skip_and_cancel(flow: Flow) -> None:
    run = tag()
    first = flow.send("flow/singleton.skip", {"user": run, "seq": f"{run}-1"})
    time.sleep(0.2)
    second = flow.send("flow/singleton.skip", {"user": run, "seq": f"{run}-2"})
    other = flow.send("flow/singleton.skip", {"user": f"{run}-x", "seq": f"{run}-x"})
    runs = {r["run_id"]: r for r in flow.wait_final([first, second, other], count=3)}
    (first_run,) = flow.runs(first)
    (second_run,) = flow.runs(second)
    assert runs[first_run["run_id"]]["status"] == "Completed"
    assert runs[second_run["run_id"]]["status"] == "Skipped"
    assert runs[second_run["run_id"]]["reason"] == f"singleton: run {first_run['run_id']} is active"
    assert flow.runs(other)[0]["status"] == "Completed"  # another key is not held back

    old = flow.send("flow/singleton.cancel", {"user": run, "seq": f"{run}-old"})
    time.sleep(0.3)
    new = flow.send("flow/singleton.cancel", {"user": run, "seq": f"{run}-new"})
    flow.wait_final([old, new], count=2)
    (old_run,), (new_run,) = flow.runs(old), flow.runs(new)
    assert old_run["status"] == "Cancelled"
    assert old_run["reason"] == f"singleton: replaced by run {new_run['run_id']}"
    assert new_run["status"] == "Completed"


def test_idempotency_expression_runs_once_per_value_for_24_hours(flow: Flow) -> None:
    run = tag()
    ids = [flow.send("flow/order", {"orderId": run, "seq": f"{run}-{i}"}) for i in range(3)]
    ids.append(flow.send("flow/order", {"orderId": f"{run}-other", "seq": f"{run}-o"}))
    flow.wait_final(ids, count=4)
    statuses = [flow.runs(event_id)[0]["status"] for event_id in ids]
    assert statuses == ["Completed", "Skipped", "Skipped", "Completed"]
    assert len([m for m in flow.marks("once-per-order") if m.seq.startswith(run)]) == 4  # 2 runs


def test_start_timeout_is_honoured_while_concurrency_holds_runs_back(flow: Flow) -> None:
    run = tag()
    ids = flow.send_many("flow/deadline", [{"seq": f"{run}-{i}"} for i in range(5)])
    runs = flow.wait_final(ids, count=5)
    statuses = sorted(r["status"] for r in runs)
    # 0.6 s each, one at a time, 1 s to start: two start in time, the rest are cancelled.
    assert statuses.count("Completed") == 2, runs
    cancelled = [r for r in runs if r["status"] == "Cancelled"]
    assert len(cancelled) == 3
    assert all("start timeout" in (r.get("reason") or "") for r in cancelled), cancelled
    # ... at their deadline, not when a slot freed up long after.
    for r in cancelled:
        waited = _ms(r["ended_at"]) - _ms(r["created_at"])
        assert waited < 1_000 + 500, r


def test_finish_timeout_counts_from_each_runs_start_while_concurrency_holds_runs_back(
    flow: Flow,
) -> None:
    # Given 8 runs, one at a time (a 0.4 s step each, then a long sleep), each to finish in 1 s
    run = tag()
    ids = flow.send_many("flow/finish", [{"seq": f"{run}-{i}"} for i in range(8)])
    runs = flow.wait_final(ids, count=8)
    # Then every run got to start (a held-back run's clock had not started) and ran its step ...
    assert [r["status"] for r in runs] == ["Cancelled"] * 8, runs
    assert all("finish timeout" in (r.get("reason") or "") for r in runs), runs
    steps = [m for m in flow.marks("must-finish-soon") if m.seq.startswith(run)]
    assert len([m for m in steps if m.what == "end"]) == 8
    assert not [m for m in steps if m.what == "after"]
    for r in runs:
        detail = flow.http.get(f"/v1/runs/{r['run_id']}").json()["data"]
        lived = _ms(detail["ended_at"]) - _ms(detail["run_started_at"])
        # ... and was cancelled at its deadline, 1 s after it started: not sooner, and not when
        # the runs queued behind the limit had all had their turn (3.2 s of steps)
        assert 1_000 - 5 <= lived < 1_000 + 1_000, detail


def test_a_start_timeout_counts_from_when_the_run_is_due(flow: Flow) -> None:
    # Given runs meant to start 2 s late (a priority of -2 s, a 2 s debounce, an event dated 2 s
    # ahead) of functions that must start within 1 s
    run = tag()
    ahead = int(time.time() * 1000) + 2_000
    ids = [
        flow.send("flow/late-priority", {"seq": f"{run}-p"}),
        flow.send("flow/late-debounce", {"seq": f"{run}-d"}),
    ]
    response = flow.clients[0].post(
        "/e/k", json={"name": "flow/late-ts", "data": {"seq": f"{run}-t"}, "ts": ahead}
    )
    assert response.status_code == 200, response.text
    ids.append(response.json()["ids"][0])
    # Then each starts when it is due and completes: the wait it was meant to have is not
    # counted against its start timeout
    runs = flow.wait_final(ids, count=3)
    assert [r["status"] for r in runs] == ["Completed"] * 3, runs
    for r in runs:
        detail = flow.http.get(f"/v1/runs/{r['run_id']}").json()["data"]
        assert _ms(detail["run_started_at"]) - _ms(r["created_at"]) >= 1_500, detail


@pytest.mark.postgres
def test_two_processes_share_concurrency_and_singleton(tmp_path: Path) -> None:
    with fresh_postgres_schema() as url:
        servers = start_servers(tmp_path, url, count=2)
        flow = Flow(servers, tmp_path / "trace.log")
        try:
            run = tag()
            datas = [{"customer": run, "seq": f"{run}-{i}", "work": 0.3} for i in range(10)]
            ids = flow.send_many("flow/concurrency", datas)
            flow.wait_final(ids, count=10)
            marks = flow.marks("per-customer")
            spans = intervals(marks, {d["seq"] for d in datas})
            assert len(spans) == 10
            assert max_overlap(list(spans.values())) == 2
            pids = {m.pid for m in marks if m.seq.startswith(run)}
            assert len(pids) == 2, "both processes should have run some of them"

            user = tag()
            first = flow.send("flow/singleton.skip", {"user": user, "seq": "1", "hold": 2}, via=0)
            time.sleep(0.2)
            second = flow.send("flow/singleton.skip", {"user": user, "seq": "2"}, via=1)
            flow.wait_final([first, second], count=2)
            assert flow.runs(first)[0]["status"] == "Completed"
            assert flow.runs(second)[0]["status"] == "Skipped"
        finally:
            flow.close()
            for server in servers:
                server.stop()


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def test_replays_keep_the_per_user_concurrency_of_their_originals(flow: Flow) -> None:
    # Given runs of a function limited to one at a time per `event.user.external_id`, for two users
    run = tag()
    owners = [f"{run}-ann", f"{run}-ann", f"{run}-bob", f"{run}-bob"]
    datas = [{"seq": f"{run}-{i}", "work": 0.3} for i in range(len(owners))]
    users = [{"external_id": owner} for owner in owners]
    ids = flow.send_many("flow/per-user", datas, users)
    originals = flow.wait_final(ids, count=4)
    assert {r["status"] for r in originals} == {"Completed"}
    spans = intervals(flow.marks("per-user"), {d["seq"] for d in datas})
    assert max_overlap(list(spans.values())) == 2  # one per user, the two users side by side
    # When they are all replayed at once
    replayed_after = int(time.time() * 1000)
    replay_all_and_wait(flow, originals)
    # Then each user's replays ran one at a time, and the two users' replays side by side (one
    # key for every replay, as when the keys did not see the user, would run them one by one)
    marks = [m for m in flow.marks("per-user") if m.at >= replayed_after]
    replayed = intervals(marks, {d["seq"] for d in datas})
    assert len(replayed) == 4
    seq_owner = {d["seq"]: owner for d, owner in zip(datas, owners, strict=True)}
    for owner in set(owners):
        mine = [span for seq, span in replayed.items() if seq_owner[seq] == owner]
        assert max_overlap(mine) == 1, (owner, replayed)
    assert max_overlap(list(replayed.values())) == 2, replayed
