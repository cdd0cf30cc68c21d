"""The engine as one object the server starts and stops: registry, event log, executor, worker."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from headwater.crypto import KeySource
from headwater.engine.drivers.inprocess import InProcessDriver
from headwater.engine.event_log import EventLog
from headwater.engine.executor import Executor, Limits
from headwater.engine.registry import FunctionRegistry
from headwater.engine.triggers import RunPlanner
from headwater.engine.worker import Worker
from headwater.flow.retry import RetryPolicy
from headwater.protocol.events import DEFAULT_LIMITS, EventLimits
from headwater.protocol.ids import new_ulid
from headwater.sdk.functions import FunctionDefinition
from headwater.store import Store

DEFAULT_LEASE_MS = 30_000


class Engine:
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
            store, keys, limits, planner=RunPlanner(self.registry), on_runs=self._wake
        )
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
        )
        self._lease_ms = lease_ms
        self._concurrency = concurrency

    def _wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def start(self) -> None:
        """Start executing runs (the store must be open). Without functions there is nothing to run."""
        if not len(self.registry):
            return
        self.worker = Worker(
            self.store,
            self.executor,
            owner=self.owner,
            lease_ms=self._lease_ms,
            concurrency=self._concurrency,
        )
        self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        self.driver.close()
