"""Cron triggers: the store verbs, the scheduler in-process (a fake clock), and real servers.

The real servers run tests/integration/apps/clock.py, whose schedules tick every second or two.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater import Headwater
from headwater.crypto import KeyRing, StaticKeys, generate_key
from headwater.engine.cron import (
    CRON_EVENT,
    CronScheduler,
    SecondsCronTrigger,
    parse_cron,
    tick_event_id,
)
from headwater.engine.event_log import EventLog
from headwater.engine.registry import FunctionRegistry
from headwater.engine.triggers import RunPlanner
from headwater.sdk.functions import FunctionDefinition
from headwater.store import EventQuery, EventRecord, Store, open_store
from headwater.store.runs import RunRecord, RunStatus
from headwater.types import Millis
from tests.conftest import BACKENDS, fresh_postgres_schema
from tests.harness import RunningServer

APP = "tests.integration.apps.clock:hw"
FINAL = {"Completed", "Failed", "Cancelled", "Skipped"}


def ms(text: str) -> Millis:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# -- the store verbs ---------------------------------------------------------------------------


async def test_a_tick_is_claimed_once_per_function(store: Store) -> None:
    assert await store.last_cron_tick("app-report") is None
    assert await store.claim_cron_tick("app-report", 60_000) is True
    assert await store.claim_cron_tick("app-report", 60_000) is False  # already recorded
    assert await store.claim_cron_tick("app-other", 60_000) is True  # per function
    assert await store.claim_cron_tick("app-report", 180_000) is True
    assert await store.claim_cron_tick("app-report", 120_000) is True  # order does not matter
    assert await store.last_cron_tick("app-report") == 180_000
    assert await store.last_cron_tick("app-other") == 60_000


async def test_concurrent_claims_of_one_tick_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_cron_tick("app-race", 60_000) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


# -- the scheduler, in-process -----------------------------------------------------------------


class Clock:
    """A settable clock in epoch ms."""

    def __init__(self, text: str) -> None:
        self.now = ms(text)

    def set(self, text: str) -> None:
        self.now = ms(text)

    def __call__(self) -> Millis:
        return self.now


def daily_app() -> list[FunctionDefinition]:
    hw = Headwater(app_id="cal")

    @hw.function(id="report", trigger=hw.on_cron("0 9 * * *"))
    async def report(ctx: object) -> None: ...

    @hw.function(id="often", triggers=[hw.on_cron("*/5 * * * *"), hw.on_cron("*/10 * * * *")])
    async def often(ctx: object) -> None: ...

    return hw.functions


def scheduler_for(
    store: Store, functions: list[FunctionDefinition], clock: Callable[[], Millis]
) -> CronScheduler:
    keys = StaticKeys(KeyRing([generate_key("test")], os.urandom(32)))
    registry = FunctionRegistry(functions)
    event_log = EventLog(store, keys, planner=RunPlanner(registry))
    scheduler = CronScheduler(store, event_log, registry, clock=clock)
    scheduler.prepare()
    return scheduler


async def timer_events(store: Store, cron: str | None = None) -> list[EventRecord]:
    """The stored `inngest/scheduled.timer` events (of one spec), oldest tick first."""
    import orjson

    events = await store.list_events(EventQuery(name=CRON_EVENT, limit=1000))
    if cron is not None:
        events = [e for e in events if orjson.loads(e.data_json)["cron"] == cron]
    return sorted(events, key=lambda e: e.internal_id)


async def runs_of(store: Store, events: list[EventRecord]) -> list[list[RunRecord]]:
    return [await store.list_runs_for_event(e.internal_id) for e in events]


async def test_a_tick_stores_one_event_and_one_run_of_its_function(store: Store) -> None:
    import orjson

    clock = Clock("2024-05-01T12:00:00Z")
    scheduler = scheduler_for(store, daily_app()[:1], clock)
    # A new function does not fire the tick before its start...
    assert await scheduler.run_due() == ms("2024-05-02T09:00:00Z")
    assert await timer_events(store) == []
    # ...but fires its next one.
    clock.set("2024-05-02T09:00:00.015+00:00")
    assert await scheduler.run_due() == ms("2024-05-03T09:00:00Z")
    (event,) = await timer_events(store)
    assert event.internal_id == tick_event_id("cal-report", ms("2024-05-02T09:00:00Z"))
    assert event.name == "inngest/scheduled.timer" and event.id == "2024-05-02T09:00:00Z"
    assert orjson.loads(event.data_json) == {
        "cron": "0 9 * * *",
        "scheduledAt": "2024-05-02T09:00:00Z",
        "fireAt": "2024-05-02T09:00:00Z",
    }
    assert event.user is None and event.received_at == clock.now
    ((run,),) = await runs_of(store, [event])
    assert run.function_id == "cal-report" and run.status is RunStatus.QUEUED
    assert run.event_ids == (event.internal_id,)
    assert await store.last_cron_tick("cal-report") == ms("2024-05-02T09:00:00Z")
    # Looking again within the same tick fires nothing more.
    clock.set("2024-05-02T09:00:30Z")
    await scheduler.run_due()
    assert len(await timer_events(store)) == 1


async def test_after_downtime_only_the_latest_missed_tick_fires_once(store: Store) -> None:
    clock = Clock("2024-05-02T09:00:00Z")
    functions = daily_app()[:1]
    await scheduler_for(store, functions, clock).run_due()  # fires 05-02 09:00
    # Given the servers were down from the 2nd to the 5th (three ticks missed)
    clock.set("2024-05-05T12:00:00Z")
    # When two processes start at once
    first, second = scheduler_for(store, functions, clock), scheduler_for(store, functions, clock)
    await asyncio.gather(first.run_due(), second.run_due())
    # Then the 5th fired (late), once; the 3rd and 4th did not
    events = await timer_events(store)
    assert [e.id for e in events] == ["2024-05-02T09:00:00Z", "2024-05-05T09:00:00Z"]
    assert [len(runs) for runs in await runs_of(store, events)] == [1, 1]
    assert events[1].received_at == clock.now  # fired at start, late
    assert await store.last_cron_tick("cal-report") == ms("2024-05-05T09:00:00Z")
    # And a restart with nothing missed fires nothing
    clock.set("2024-05-05T18:00:00Z")
    await scheduler_for(store, functions, clock).run_due()
    assert len(await timer_events(store)) == 2


async def test_two_triggers_of_a_function_due_together_start_one_run(store: Store) -> None:
    clock = Clock("2024-05-01T10:01:00Z")
    scheduler = scheduler_for(store, daily_app()[1:], clock)
    await scheduler.run_due()
    for minute in ("05", "10", "15", "20"):
        clock.set(f"2024-05-01T10:{minute}:00Z")
        await scheduler.run_due()
    events = await timer_events(store)
    # 10:10 and 10:20 are ticks of both triggers: still one event (the first trigger's) each.
    assert [e.id[11:16] for e in events] == ["10:05", "10:10", "10:15", "10:20"]
    assert [len(runs) for runs in await runs_of(store, events)] == [1, 1, 1, 1]


async def test_processes_firing_every_tick_together_store_each_once(store_url: str) -> None:
    # Several store objects on one database are several processes as far as the database knows
    # (SQLite: one writer connection each; PostgreSQL: one pool each).
    clock = Clock("2024-05-01T10:00:30Z")
    async with AsyncExitStack() as stack:
        stores = []
        for _ in range(3):
            opened = open_store(store_url)
            await opened.open()
            stack.push_async_callback(opened.close)
            stores.append(opened)
        schedulers = [scheduler_for(s, daily_app()[1:], clock) for s in stores]
        await asyncio.gather(*(s.run_due() for s in schedulers))
        for minute in range(5, 35, 5):
            clock.set(f"2024-05-01T10:{minute:02d}:00Z")
            fired = await asyncio.gather(*(s.run_due() for s in schedulers))
            assert len(set(fired)) == 1  # all agree on the next tick
        events = await timer_events(stores[0])
        assert len(events) == 6 and len({e.id for e in events}) == 6
        assert [len(runs) for runs in await runs_of(stores[0], events)] == [1] * 6


async def test_a_failing_tick_is_retried_until_a_newer_tick_replaces_it(store: Store) -> None:
    clock = Clock("2024-05-01T10:04:00Z")
    scheduler = scheduler_for(store, daily_app()[1:], clock)
    await scheduler.run_due()
    real_append = scheduler.event_log.append_system
    failures = 0

    async def flaky(*args: Any, **kwargs: Any) -> int:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OSError("the database is away")
        return await real_append(*args, **kwargs)

    scheduler.event_log.append_system = flaky  # type: ignore[method-assign]
    clock.set("2024-05-01T10:05:00Z")
    assert await scheduler.run_due() == ms("2024-05-01T10:05:01Z")  # retried in 1 s
    clock.set("2024-05-01T10:05:01Z")
    assert await scheduler.run_due() == ms("2024-05-01T10:05:03Z")  # then in 2 s
    clock.set("2024-05-01T10:05:03Z")
    assert await scheduler.run_due() == ms("2024-05-01T10:10:00Z")  # stored: back to the schedule
    assert [e.id for e in await timer_events(store)] == ["2024-05-01T10:05:00Z"]


async def test_stop_ends_a_long_sleep_at_once_and_sleeping_costs_no_wakeups(store: Store) -> None:
    hw = Headwater(app_id="yearly")

    @hw.function(id="new-year", trigger=hw.on_cron("0 0 1 1 *"))
    async def new_year(ctx: object) -> None: ...

    keys = StaticKeys(KeyRing([generate_key("test")], os.urandom(32)))
    registry = FunctionRegistry(hw.functions)
    scheduler = CronScheduler(store, EventLog(store, keys), registry)
    calls = 0
    real_run_due = scheduler.run_due

    async def counting() -> Millis | None:
        nonlocal calls
        calls += 1
        return await real_run_due()

    scheduler.run_due = counting  # type: ignore[method-assign]
    await scheduler.start()
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await scheduler.stop()
    assert time.monotonic() - started < 0.5
    assert calls == 1  # one look, then asleep until the next tick (in slices of a minute)


async def test_a_spec_the_engine_cannot_schedule_fails_the_start(store: Store) -> None:
    hw = Headwater(app_id="bad")

    @hw.function(id="random", trigger=hw.on_cron("R 9 * * *"))  # croniter's random minute
    async def random(ctx: object) -> None: ...

    keys = StaticKeys(KeyRing([generate_key("test")], os.urandom(32)))
    scheduler = CronScheduler(store, EventLog(store, keys), FunctionRegistry(hw.functions))
    from headwater.errors import FunctionDefinitionError

    with pytest.raises(FunctionDefinitionError, match="random"):
        await scheduler.start()


def test_seconds_triggers_are_cron_triggers_of_their_function() -> None:
    hw = Headwater(app_id="clock")

    @hw.function(id="fast", trigger=SecondsCronTrigger("*/2 * * * * *"))
    async def fast(ctx: object) -> None: ...

    (trigger,) = hw.functions[0].cron_triggers
    assert parse_cron(trigger.cron, seconds=True).expression == "*/2 * * * * *"


# -- real servers --------------------------------------------------------------------------------


class Clocks:
    """Servers of the clock app sharing one database, and reads of their REST API."""

    def __init__(self, base: Path, db_url: str | None) -> None:
        self.base = base
        self.db_url = db_url or f"sqlite:///{base / 'shared.db'}"
        self.trace = base / "trace.log"
        self.servers: list[RunningServer] = []
        self.http: httpx.Client | None = None

    def start(self) -> RunningServer:
        """Start one more server; the API is read through the first one still running."""
        server = RunningServer(
            self.base / f"server-{len(self.servers)}",
            db_url=self.db_url,
            env={"CLOCK_TRACE": str(self.trace)},
            extra_args=[APP],
        ).start()
        self.servers.append(server)
        if self.http is None:
            self.http = httpx.Client(base_url=server.url, timeout=30)
        return server

    def stop_server(self, server: RunningServer) -> None:
        server.stop()
        if self.http is not None and str(self.http.base_url).rstrip("/") == server.url:
            self.http.close()
            self.http = None

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        for server in self.servers:
            server.stop()

    def api(self, path: str, **params: Any) -> Any:
        assert self.http is not None
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def timer_events(self, cron: str) -> list[dict[str, Any]]:
        events = self.api("/v1/events", name=CRON_EVENT, limit=100)
        return sorted(
            (e for e in events if e["data"]["cron"] == cron), key=lambda e: e["data"]["scheduledAt"]
        )

    def wait_for_ticks(
        self, cron: str, count: int, *, after: float = 0, timeout: float = 20
    ) -> list[dict[str, Any]]:
        """The tick events of `cron`, once `count` of them are scheduled after `after` (epoch s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.timer_events(cron)
            if sum(ms(e["data"]["scheduledAt"]) > after * 1000 for e in events) >= count:
                return events
            time.sleep(0.1)
        logs = "\n".join(server.log() for server in self.servers)
        raise AssertionError(f"fewer than {count} ticks of {cron!r}:\n{logs}")

    def finished_runs(self, event: dict[str, Any], timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.api(f"/v1/events/{event['internal_id']}/runs")
            if runs and all(run["status"] in FINAL for run in runs):
                return runs
            time.sleep(0.05)
        raise AssertionError(f"the runs of {event} did not finish: {runs}")

    def executions(self) -> Counter[str]:
        """How many times each `<function>:<scheduledAt>` ran (over every process)."""
        lines = self.trace.read_text().splitlines() if self.trace.exists() else []
        return Counter(line.rsplit(":", 1)[0] for line in lines)


@contextmanager
def clocks(tmp_path: Path, backend: str) -> Iterator[Clocks]:
    if backend == "sqlite":
        group = Clocks(tmp_path, None)
        try:
            yield group
        finally:
            group.stop()
        return
    with fresh_postgres_schema() as url:
        group = Clocks(tmp_path, url)
        try:
            yield group
        finally:
            group.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_starts_one_run_per_tick_triggered_by_the_timer_event(
    backend: str, tmp_path: Path
) -> None:
    with clocks(tmp_path, backend) as group:
        group.start()
        events = group.wait_for_ticks("* * * * * *", 3)
        for event in events:
            assert event["name"] == "inngest/scheduled.timer"
            assert event["id"] == event["data"]["scheduledAt"] == event["data"]["fireAt"]
            (run,) = group.finished_runs(event)
            assert run["function_id"] == "clock-tick" and run["status"] == "Completed", run
            assert run["event_id"] == event["internal_id"]
            assert run["output"] == {
                "name": "inngest/scheduled.timer",
                "id": event["id"],
                "data": event["data"],
            }
        stamps = [e["data"]["scheduledAt"] for e in events]
        assert len(set(stamps)) == len(stamps)
        assert all(stamp.endswith("Z") and "." not in stamp for stamp in stamps)
        # The time-zoned schedule ticks on even seconds.
        for event in group.wait_for_ticks("TZ=Europe/Paris */2 * * * * *", 2):
            assert int(event["data"]["scheduledAt"][17:19]) % 2 == 0
            (run,) = group.finished_runs(event)
            assert run["function_id"] == "clock-paris"
        # System events are listed only when asked for by name.
        assert all(not e["name"].startswith("inngest/") for e in group.api("/v1/events"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_servers_on_one_database_start_exactly_one_run_per_tick(
    backend: str, tmp_path: Path
) -> None:
    with clocks(tmp_path, backend) as group:
        group.start()
        group.start()
        both_up = time.time()
        # Every tick from now on is fired by both processes at once.
        events = group.wait_for_ticks("* * * * * *", 4, after=both_up)
        stamps = [e["data"]["scheduledAt"] for e in events]
        assert len(set(stamps)) == len(stamps), "a tick was stored twice"
        for event in events:
            (run,) = group.finished_runs(event)
            assert run["function_id"] == "clock-tick" and run["status"] == "Completed"
        executions = group.executions()
        assert all(executions[f"tick:{stamp}"] == 1 for stamp in stamps), executions
        for event in group.wait_for_ticks("TZ=Europe/Paris */2 * * * * *", 2, after=both_up):
            assert len(group.finished_runs(event)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restart_fires_only_the_latest_missed_tick(backend: str, tmp_path: Path) -> None:
    with clocks(tmp_path, backend) as group:
        server = group.start()
        group.wait_for_ticks("* * * * * *", 2)
        group.stop_server(server)
        stopped_at = time.time() * 1000
        time.sleep(3)  # three ticks go by with no server running
        restarted_at = time.time() * 1000
        group.start()
        events = group.wait_for_ticks("* * * * * *", 2, after=restarted_at / 1000)
        ticks = sorted(ms(e["data"]["scheduledAt"]) for e in events)
        assert len(set(ticks)) == len(ticks)
        missed = [t for t in ticks if stopped_at < t < restarted_at - 1000]
        # The ticks of the downtime were dropped but the latest one, fired at start (it is at most
        # a second before the restart, or during it): no storm of the three missed ones.
        assert missed == [], (stopped_at, restarted_at, ticks)
        first_after = min(t for t in ticks if t > stopped_at)
        assert first_after >= restarted_at - 1000
