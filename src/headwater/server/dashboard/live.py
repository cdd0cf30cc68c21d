"""The live event stream of the dashboard's events page.

On SQLite one process stores every event: the engine calls `EventFeed.publish` (its
`event_listeners` hook) with every batch it stores, and each open stream has a bounded queue (a
page that cannot keep up loses events rather than slowing the ingest path; it shows them on its
next reload). On PostgreSQL other processes store events too, so streams poll the store instead
(`poll_events`).

Both end when their `stop` event is set (the server is shutting down): an open page must not hold
up the server's exit, and a stream that ends rather than being cut off ends its response cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Final

import anyio

from headwater.clock import now_ms
from headwater.store import EventQuery, EventRecord, Store
from headwater.store.queries import EventPage

QUEUE_SIZE: Final = 256


class EventFeed:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[EventRecord]] = set()

    def publish(self, records: Sequence[EventRecord]) -> None:
        for queue in self._subscribers:
            for record in records:
                if queue.full():
                    break
                queue.put_nowait(record)

    async def subscribe(self, stop: anyio.Event) -> AsyncIterator[EventRecord]:
        """The events this process stores from now on, until `stop` is set."""
        queue: asyncio.Queue[EventRecord] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            while not stop.is_set():
                if queue.empty():
                    record = await _next_unless_stopped(queue, stop)
                else:
                    record = queue.get_nowait()  # no task to start: nothing to wait for
                if record is None:
                    return
                yield record
        finally:
            self._subscribers.discard(queue)


async def _next_unless_stopped(
    queue: asyncio.Queue[EventRecord], stop: anyio.Event
) -> EventRecord | None:
    """The next record of `queue`, or None as soon as `stop` is set."""
    record = None
    async with anyio.create_task_group() as group:

        async def cancel_on_stop() -> None:
            await stop.wait()
            group.cancel_scope.cancel()

        group.start_soon(cancel_on_stop)
        record = await queue.get()
        group.cancel_scope.cancel()
    return record


#: How far back each poll looks again: an event is visible once its transaction commits, which may
#: be a little after its `received_at` (a group commit, another process's clock).
POLL_OVERLAP_MS: Final = 5_000


async def poll_events(
    store: Store, name: str | None, stop: anyio.Event, interval_s: float = 1.0
) -> AsyncIterator[EventRecord]:
    """Events stored by any process, from now on, oldest first, each once, until `stop` is set:
    the live stream of a deployment where several processes share the database (PostgreSQL),
    whose hook sees only this process's events. One indexed page per second per open stream."""
    seen: dict[str, int] = {}
    since = now_ms()
    while not stop.is_set():
        query = EventQuery(limit=200, name=name, received_after=since - POLL_OVERLAP_MS)
        records = await store.list_events_received(EventPage(query))
        for record in reversed(records):
            if stop.is_set():
                return
            if record.internal_id not in seen:
                seen[record.internal_id] = record.received_at
                yield record
        if records:
            since = max(since, records[0].received_at)
        horizon = since - 2 * POLL_OVERLAP_MS
        for internal_id in [i for i, at in seen.items() if at < horizon]:
            del seen[internal_id]
        with anyio.move_on_after(interval_s):
            await stop.wait()
