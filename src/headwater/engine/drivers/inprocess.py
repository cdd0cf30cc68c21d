"""Runs our SDK's functions in the server's own process, straight through (no per-step replay)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from headwater.protocol.steps import CallRequest, CallResponse
from headwater.sdk.execution import Checkpoint, EventSender, execute
from headwater.sdk.functions import FunctionDefinition

#: Sync functions run in this many threads at most; more wait for a free thread. Sized for I/O
#: bound user code on a small machine: steps mostly wait on networks, not on the CPU.
SYNC_FUNCTION_THREADS = 32


class InProcessDriver:
    def __init__(self, threads: int = SYNC_FUNCTION_THREADS) -> None:
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="headwater-fn")

    async def call(
        self,
        function: FunctionDefinition,
        request: CallRequest,
        checkpoint: Checkpoint | None,
        sender: EventSender | None = None,
    ) -> CallResponse:
        return await execute(
            function, request, checkpoint=checkpoint, threads=self._threads, sender=sender
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
