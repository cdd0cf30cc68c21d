"""The live event stream of the dashboard's events page.

On SQLite one process stores every event: the engine calls `EventFeed.publish` (its
`event_listeners` hook) with every batch it stores, and each open stream has a bounded queue (a
page that cannot keep up loses events rather than slowing the ingest path; it shows them on its
next reload). On PostgreSQL other processes store events too, so streams poll the store instead
(`poll_events`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Final

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

    async def subscribe(self) -> AsyncIterator[EventRecord]:
        queue: asyncio.Queue[EventRecord] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)


#: How far back each poll looks again: an event is visible once its transaction commits, which may
#: be a little after its `received_at` (a group commit, another process's clock).
POLL_OVERLAP_MS: Final = 5_000


async def poll_events(
    store: Store, name: str | None, interval_s: float = 1.0
) -> AsyncIterator[EventRecord]:
    """Events stored by any process, from now on, oldest first, each once: the live stream of a
    deployment where several processes share the database (PostgreSQL), whose hook sees only
    this process's events. One indexed page per second per open stream."""
    seen: dict[str, int] = {}
    since = now_ms()
    while True:
        query = EventQuery(limit=200, name=name, received_after=since - POLL_OVERLAP_MS)
        records = await store.list_events_received(EventPage(query))
        for record in reversed(records):
            if record.internal_id not in seen:
                seen[record.internal_id] = record.received_at
                yield record
        if records:
            since = max(since, records[0].received_at)
        horizon = since - 2 * POLL_OVERLAP_MS
        for internal_id in [i for i, at in seen.items() if at < horizon]:
            del seen[internal_id]
        await asyncio.sleep(interval_s)
