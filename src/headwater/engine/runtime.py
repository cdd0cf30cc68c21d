"""The engine as one object the server starts and stops: registry, event log, executor, worker."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence

import orjson

from headwater.clock import now_ms
from headwater.crypto import KeySource
from headwater.engine.apps import function_from_config
from headwater.engine.cancellations import Cancellations
from headwater.engine.cron import CronScheduler
from headwater.engine.drivers.http import HttpDriver
from headwater.engine.drivers.inprocess import InProcessDriver
from headwater.engine.event_log import EventLog
from headwater.engine.executor import Executor, Limits
from headwater.engine.outcomes import INVOKED, RunOutcomes
from headwater.engine.registry import FunctionRegistry
from headwater.engine.replay import Replays
from headwater.engine.triggers import RunPlanner
from headwater.engine.waits import WaitMatcher
from headwater.engine.worker import Worker
from headwater.flow.retry import RetryPolicy
from headwater.protocol.events import DEFAULT_LIMITS, EventLimits, NormalizedEvent
from headwater.protocol.ids import IdSeed, new_ulid
from headwater.protocol.steps import CallRequest, CallResponse
from headwater.randomness import random_bytes
from headwater.sdk.execution import Checkpoint, EventSender
from headwater.sdk.functions import FunctionDefinition
from headwater.store import EventRecord, Store
from headwater.store.retention import Deleted
from headwater.store.runs import NewRun
from headwater.types import JSONObject

DEFAULT_LEASE_MS = 30_000
WATCHED_NAMES_REFRESH_S = 2.0
#: How often an engine on a shared store (PostgreSQL) looks for apps synced through another
#: process: a checksum comparison of the `apps` rows, cheap; a changed app is then reloaded.
APPS_REFRESH_S = 5.0
#: How often state nobody needs any more (flow control's, old cron ticks) is forgotten, and how
#: old it must be: older than any throttle or rate-limit period (7 days at most).
PRUNE_INTERVAL_S = 3_600.0
STATE_MAX_AGE_MS = 8 * 86_400_000
#: Retention runs at start and then this often, deleting in batches of this many rows per table.
RETENTION_INTERVAL_S = 3_600.0
RETENTION_BATCH = 1_000
log = logging.getLogger("headwater.engine")


class _DriverByFunction:
    """The one driver the executor calls: in-process for our SDK's functions, HTTP for functions
    served by an app (`url` set). Both speak CallRequest/CallResponse, so nothing else in the
    engine knows which SDK answered."""

    def __init__(self, in_process: InProcessDriver, http: HttpDriver) -> None:
        self.in_process = in_process
        self.http = http

    async def call(
        self,
        function: FunctionDefinition,
        request: CallRequest,
        checkpoint: Checkpoint | None,
        sender: EventSender | None = None,
    ) -> CallResponse:
        driver = self.in_process if function.url is None else self.http
        return await driver.call(function, request, checkpoint, sender)


class Engine:
    #: Fires the cron triggers while started (engine/cron.py).
    cron: CronScheduler | None = None

    def __init__(
        self,
        store: Store,
        keys: KeySource,
        functions: Iterable[FunctionDefinition] = (),
        *,
        limits: EventLimits = DEFAULT_LIMITS,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        run_limits: Limits = Limits(),  # noqa: B008 - immutable
        lease_ms: int = DEFAULT_LEASE_MS,
        concurrency: int = 64,
        retention_ms: int | None = None,
    ) -> None:
        self.store = store
        self.registry = FunctionRegistry(functions)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_ulid()[-6:]}"
        self.driver = InProcessDriver()
        self.http_driver = HttpDriver()
        #: The checksum of each synced app's registered functions (see `register_app`).
        self.app_checksums: dict[str, str] = {}
        self._started = False
        self.worker: Worker | None = None
        self.event_log = EventLog(
            store,
            keys,
            limits,
            planner=RunPlanner(self.registry),
            on_runs=self._wake,
            on_stored=self._on_stored,
        )
        self.outcomes = RunOutcomes(store, self.event_log)
        self.replays = Replays(store, self.event_log, self.registry, self._wake, self.owner)
        self.cancellations = Cancellations(store, self.event_log, self.outcomes, self.owner)
        #: Called with every batch of events stored by this process (the dashboard's live
        #: stream listens here); a listener must not block.
        self.event_listeners: list[Callable[[Sequence[EventRecord]], None]] = []
        self.matcher = WaitMatcher(store, self.event_log, self._wake, self.outcomes.cancel)
        #: Names of events some run waits for: only those events are matched against waits.
        self.watched_names: set[str] = {rule.event for f in self.registry for rule in f.cancel_on}
        self._background: set[asyncio.Task[None]] = set()
        self.executor = Executor(
            store,
            self.event_log,
            self.registry,
            _DriverByFunction(self.driver, self.http_driver),
            owner=self.owner,
            lease_ms=lease_ms,
            retry=retry,
            limits=run_limits,
            on_reschedule=self._wake,
            matcher=self.matcher,
            on_wait_name=self.watched_names.add,
            outcomes=self.outcomes,
        )
        self._lease_ms = lease_ms
        self._concurrency = concurrency
        #: Ended runs and events older than this are deleted (None: kept for ever).
        self.retention_ms = retention_ms

    def _on_stored(self, records: Sequence[EventRecord]) -> None:
        for listener in self.event_listeners:
            try:
                listener(records)
            except Exception:
                log.exception("an event listener failed")
        names = [record.name for record in records]
        if self.worker is None or self.watched_names.isdisjoint(names):
            return
        ids = [record.internal_id for record in records]
        task = asyncio.create_task(self._match(ids, names))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _match(self, ids: list[str], names: list[str]) -> None:
        try:
            await self.matcher.on_events(ids, names)
        except Exception:
            log.exception("matching events to waiting runs failed")

    async def _refresh_watched_names(self) -> None:
        """Learn the event names that waits of other processes (PostgreSQL) are waiting for.

        The first time a name is seen (every name, at start), its waits are matched against the
        events already stored: that catches events stored while no process was matching them,
        e.g. by a process that did not know the name yet, or one that crashed between storing an
        event and matching it."""
        scanned: set[str] = set()
        while True:
            try:
                names = await self.store.wait_event_names(now_ms())
                self.watched_names |= names
                for name in names - scanned:
                    for wait in await self.store.pending_waits(name, now_ms()):
                        await self.matcher.scan(wait)
                    scanned.add(name)
            except Exception:
                log.exception("reading the names of awaited events failed")
            await asyncio.sleep(WATCHED_NAMES_REFRESH_S)

    async def retain(self) -> Deleted:
        """Delete what is older than the retention period, batch after batch until nothing is
        left; returns how much went."""
        assert self.retention_ms is not None
        cutoff = now_ms() - self.retention_ms
        runs = events = keys = 0
        while True:
            batch = await self.store.delete_expired(cutoff, RETENTION_BATCH)
            runs, events, keys = runs + batch.runs, events + batch.events, keys + batch.keys
            if batch.total == 0:
                break
            await asyncio.sleep(0)  # let other work through between batches
        if runs or events or keys:
            log.info(
                "retention: deleted %d runs, %d events, %d idempotency keys", runs, events, keys
            )
        return Deleted(runs, events, keys)

    async def _retain_periodically(self) -> None:
        while True:
            try:
                await self.retain()
            except Exception:
                log.exception("deleting old runs and events failed")
            await asyncio.sleep(RETENTION_INTERVAL_S)

    async def _prune_state(self) -> None:
        while True:
            try:
                await self.store.prune_state(now_ms() - STATE_MAX_AGE_MS)
            except Exception:
                log.exception("pruning old state failed")
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def _wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def invoke(self, slug: str, data: JSONObject) -> str:
        """Start a run of the function `slug` with `data` as its event's data, as `POST
        /invoke/{slug}` does (PROTOCOL §1.1): an `inngest/function.invoked` event naming the
        function in `data._inngest.fn_id`. Nobody waits for the result. Returns the event's
        internal id; LookupError if no function has that slug."""
        if self.registry.get(slug) is None:
            raise LookupError(f"no function {slug!r} is registered")
        now = now_ms()
        invoked = NormalizedEvent(
            name=INVOKED,
            data={**data, "_inngest": {"fn_id": slug}},
            user={},
            id=None,
            ts=now,
            v=None,
            meta=None,
        )
        seed = IdSeed(now, random_bytes(10))

        def run_of(records: Sequence[EventRecord]) -> list[NewRun]:
            return [NewRun(new_ulid(), slug, (records[0].internal_id,), now, now)]

        await self.event_log.append_system([invoked], run_of, seed=seed)
        return seed.ulid(1)

    # -- apps synced over the Inngest protocol -----------------------------------------------------

    def check_app(self, app_id: str, definitions: Sequence[FunctionDefinition]) -> None:
        """Raise FunctionDefinitionError if the app's functions cannot be registered (a slug that
        an in-process function already has, an expression that does not compile)."""
        self.registry.preview_app(app_id, definitions)

    async def register_app(
        self, app_id: str, definitions: Sequence[FunctionDefinition], checksum: str
    ) -> None:
        """Make `definitions` the functions of the synced app `app_id`, replacing those of its
        earlier sync in one swap (events planned meanwhile see the old set or the new one). Starts
        the worker if these are the first functions; reloads the cron schedules."""
        self.registry.replace_app(app_id, definitions)
        self.app_checksums[app_id] = checksum
        self.watched_names |= {rule.event for d in definitions for rule in d.cancel_on}
        if not self._started:
            return
        if self.worker is None:
            await self._run_functions()
            return
        if self.cron is not None:
            await self.cron.stop()
        self.cron = CronScheduler(self.store, self.event_log, self.registry)
        try:
            await self.cron.start()
        except Exception:
            log.exception("the cron schedules of app %s cannot be started", app_id)

    async def load_apps(self) -> None:
        """Register the stored apps whose checksum differs from the one registered here: all of
        them at start (a restart keeps synced apps), those synced by other processes later."""
        for app in await self.store.list_apps():
            if self.app_checksums.get(app.app_id) == app.checksum:
                continue
            definitions = []
            for record in await self.store.app_functions(app.app_id):
                try:
                    config = orjson.loads(record.config_json)
                    definitions.append(function_from_config(app.app_id, config))
                except Exception:
                    log.exception("stored function %s cannot be loaded; skipped", record.slug)
            try:
                await self.register_app(app.app_id, definitions, app.checksum)
            except Exception:
                log.exception("stored app %s cannot be registered; skipped", app.app_id)

    async def _refresh_apps(self) -> None:
        # PostgreSQL: another process may sync an app; learn of it within APPS_REFRESH_S.
        while True:
            await asyncio.sleep(APPS_REFRESH_S)
            try:
                await self.load_apps()
            except Exception:
                log.exception("reading the synced apps failed")

    async def start(self) -> None:
        """Load the synced apps, then start executing runs (the store must be open). Without
        functions there is nothing to run until an app is synced (`register_app`)."""
        self._started = True
        try:
            await self.load_apps()
        except Exception:
            log.exception("reading the synced apps failed")
        if self.store.apps_shared_between_processes:
            refresh = asyncio.create_task(self._refresh_apps())
            self._background.add(refresh)
        if self.retention_ms is not None:
            retention = asyncio.create_task(self._retain_periodically())
            self._background.add(retention)
        if len(self.registry):
            await self._run_functions()
        self.replays.start()
        self.cancellations.start()

    async def _run_functions(self) -> None:
        self.cron = CronScheduler(self.store, self.event_log, self.registry)
        await self.cron.start()  # parses every schedule first: a bad one fails the start here
        self.worker = Worker(
            self.store,
            self.executor,
            owner=self.owner,
            lease_ms=self._lease_ms,
            concurrency=self._concurrency,
        )
        self.worker.start()
        self.store.watch_queue(self._wake)
        prune = asyncio.create_task(self._prune_state())
        self._background.add(prune)
        refresh = asyncio.create_task(self._refresh_watched_names())
        self._background.add(refresh)

    async def stop(self) -> None:
        self._started = False
        await self.replays.close()
        await self.cancellations.close()
        if self.cron is not None:  # first: no new runs while the worker stops
            await self.cron.stop()
            self.cron = None
        # Cancel again until every task is done: a cancellation that lands inside a store call
        # may come back as a store error, which the refresh loops log and survive.
        pending = set(self._background)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        self._background.clear()
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        self.driver.close()
        await self.http_driver.aclose()
