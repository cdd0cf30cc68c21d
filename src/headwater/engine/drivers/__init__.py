"""Drivers call a function for the engine: in-process (our SDK) or, later, over HTTP."""

from __future__ import annotations

from typing import Protocol

from headwater.protocol.steps import CallRequest, CallResponse
from headwater.sdk.execution import Checkpoint, EventSender
from headwater.sdk.functions import FunctionDefinition


class Driver(Protocol):
    async def call(
        self,
        function: FunctionDefinition,
        request: CallRequest,
        checkpoint: Checkpoint | None,
        sender: EventSender | None = None,
    ) -> CallResponse: ...
