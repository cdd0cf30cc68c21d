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

try:
    __version__ = version("headwater")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "ConfigurationError",
    "Event",
    "EventLimits",
    "EventValidationError",
    "Headwater",
    "HeadwaterError",
    "SendError",
    "SendFailedError",
    "SendRejectedError",
    "SendResult",
    "__version__",
]
