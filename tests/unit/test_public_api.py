"""The public surface is explicit: this test pins it, so a change to it is a decision."""

from __future__ import annotations

import subprocess
import sys

import headwater


def test_public_names_are_pinned() -> None:
    assert sorted(headwater.__all__) == [
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
    for name in headwater.__all__:
        assert hasattr(headwater, name)


def test_the_client_imports_nothing_of_the_server() -> None:
    # An app that only sends events needs httpx and nothing of the server (DESIGN.md).
    code = (
        "import sys, headwater; hw = headwater.Headwater(app_id='x');"
        "heavy = [m for m in ('starlette', 'uvicorn', 'psycopg', 'sqlite3', 'cryptography',"
        " 'headwater.store', 'headwater.server', 'headwater.engine') if m in sys.modules];"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
