"""The live event stream: events stored by this process, handed to each open dashboard page.

The engine calls `publish` (its `event_listeners` hook) with every batch it stores; each open
stream has a bounded queue, and a page that cannot keep up loses events rather than slowing the
ingest path (it shows them on its next reload).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Final

from headwater.store import EventRecord

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
