"""Wake-ups between processes sharing one PostgreSQL database: LISTEN/NOTIFY on one channel.

A process that makes queue work available (creates runs, frees a concurrency slot by finishing or
rescheduling an execution, resolves a wait) sends a NOTIFY; every process listening calls its
`wake`, so its worker claims at once instead of at its next poll. Notifications are only hints: a
lost one costs latency (the worker's slow poll still finds the work), never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import psycopg

log = logging.getLogger("headwater.store.postgres")

CHANNEL: Final = "headwater_queue"
#: Wait this long before listening again after the connection was lost.
_RECONNECT_S: Final = 1.0


class QueueListener:
    """A dedicated connection (not from the pool: it is held for as long as the store is open)
    that LISTENs and calls `wake` for each notification."""

    def __init__(self, conninfo: str, wake: Callable[[], None]) -> None:
        self._conninfo = conninfo
        self._wake = wake
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="headwater-pg-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self._wake()  # whatever was notified while not listening
                    async for _ in connection.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listening for queue notifications failed (%s); retrying", exc)
            await asyncio.sleep(_RECONNECT_S)
