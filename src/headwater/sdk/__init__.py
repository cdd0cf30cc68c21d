"""The Python SDK: `Headwater` sends events to a Headwater or Inngest server.

It imports nothing of the server, so an app that only sends events needs httpx and orjson.
"""

from __future__ import annotations

from headwater.protocol.events import DEFAULT_LIMITS, Event, EventLimits
from headwater.sdk.client import Headwater
from headwater.sdk.config import ClientConfig, resolve_config
from headwater.sdk.sender import EventSender, SendResult, backoff_delay

__all__ = [
    "DEFAULT_LIMITS",
    "ClientConfig",
    "Event",
    "EventLimits",
    "EventSender",
    "Headwater",
    "SendResult",
    "backoff_delay",
    "resolve_config",
]
