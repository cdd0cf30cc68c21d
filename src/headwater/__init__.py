"""Headwater: a self-hostable event platform and durable-function engine, wire-compatible with Inngest.

The public surface is what `__all__` lists; everything else may change between versions.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from headwater.errors import (
    ConfigurationError,
    EventValidationError,
    HeadwaterError,
    SendError,
    SendFailedError,
    SendRejectedError,
)
from headwater.protocol.events import Event, EventLimits
from headwater.sdk import Headwater, SendResult
from headwater.sdk.flow_options import (
    Batch,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)

try:
    __version__ = version("headwater")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Batch",
    "Concurrency",
    "ConfigurationError",
    "Debounce",
    "Event",
    "EventLimits",
    "EventValidationError",
    "Headwater",
    "HeadwaterError",
    "Priority",
    "RateLimit",
    "SendError",
    "SendFailedError",
    "SendRejectedError",
    "SendResult",
    "Singleton",
    "Throttle",
    "__version__",
]
