"""Claims due queue items and runs them, up to a concurrency limit; idle costs no CPU.

The worker sleeps until the earliest due time the store knows of, or until something wakes it
(a new run, a reschedule). A slow fallback poll covers work that another process enqueued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from headwater.clock import now_ms
from headwater.engine.executor import Executor
from headwater.store import Store
from headwater.store.runs import QueueItem

log = logging.getLogger("headwater.worker")

#: With no due time known, look again this often (work enqueued by another process).
_FALLBACK_POLL_S: Final = 5.0
#: Items are due but flow control holds them back (their concurrency keys are at their limits):
#: a slot freed here wakes the worker at once; this poll finds slots freed by other processes.
_BLOCKED_POLL_S: Final = 0.25


class Worker:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        owner: str,
        lease_ms: int,
        concurrency: int = 64,
    ) -> None:
        self.store = store
        self.executor = executor
        self.owner = owner
        self.lease_ms = lease_ms
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The `now` of the latest claim: an item due after it may simply not have been due yet.
        self._claimed_at = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="headwater-worker")

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self._claim()
            except Exception:
                log.exception("claiming work failed; retrying shortly")
                await asyncio.sleep(1)
                continue
            if claimed:
                continue  # more may be due right away
            await self._sleep_until_due()

    async def _claim(self) -> int:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        self._claimed_at = now_ms()
        items = await self.store.claim_due(self.owner, self._claimed_at, self.lease_ms, free)
        for item in items:
            task = asyncio.create_task(self._run(item), name=f"run-{item.run_id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(items)

    async def _run(self, item: QueueItem) -> None:
        try:
            await self.executor.run_item(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and the item is claimed again: nothing is lost.
            log.exception("executing run %s failed", item.run_id)
        finally:
            self.wake()  # a slot is free

    async def _sleep_until_due(self) -> None:
        timeout = _FALLBACK_POLL_S
        if len(self._running) < self.concurrency:
            due = await self.store.next_due_at()
            if due is not None:
                # Called after a claim that took nothing: an item that was due by then is held
                # back by flow control, and claiming again at once would only spin.
                wait = max(0.0, (due - now_ms()) / 1000)
                held_back = due <= self._claimed_at
                timeout = min(timeout, _BLOCKED_POLL_S if held_back else wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
