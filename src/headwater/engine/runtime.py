"""The engine as one object the server starts and stops: registry, event log, executor, worker."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterable, Sequence

from headwater.crypto import KeySource
from headwater.engine.cron import CronScheduler
from headwater.engine.drivers.inprocess import InProcessDriver
from headwater.engine.event_log import EventLog
from headwater.engine.executor import Executor, Limits, now_ms
from headwater.engine.outcomes import RunOutcomes
from headwater.engine.registry import FunctionRegistry
from headwater.engine.triggers import RunPlanner
from headwater.engine.waits import WaitMatcher
from headwater.engine.worker import Worker
from headwater.flow.retry import RetryPolicy
from headwater.protocol.events import DEFAULT_LIMITS, EventLimits
from headwater.protocol.ids import new_ulid
from headwater.sdk.functions import FunctionDefinition
from headwater.store import EventRecord, Store

DEFAULT_LEASE_MS = 30_000
WATCHED_NAMES_REFRESH_S = 2.0
log = logging.getLogger("headwater.engine")


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
    ) -> None:
        self.store = store
        self.registry = FunctionRegistry(functions)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_ulid()[-6:]}"
        self.driver = InProcessDriver()
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
        self.matcher = WaitMatcher(store, self.event_log, self._wake, self.outcomes.cancel)
        #: Names of events some run waits for: only those events are matched against waits.
        self.watched_names: set[str] = {rule.event for f in self.registry for rule in f.cancel_on}
        self._background: set[asyncio.Task[None]] = set()
        self.executor = Executor(
            store,
            self.event_log,
            self.registry,
            self.driver,
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

    def _on_stored(self, records: Sequence[EventRecord]) -> None:
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

    def _wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def start(self) -> None:
        """Start executing runs (the store must be open). Without functions there is nothing to run."""
        if not len(self.registry):
            return
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
        refresh = asyncio.create_task(self._refresh_watched_names())
        self._background.add(refresh)

    async def stop(self) -> None:
        if self.cron is not None:  # first: no new runs while the worker stops
            await self.cron.stop()
            self.cron = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        self.driver.close()
