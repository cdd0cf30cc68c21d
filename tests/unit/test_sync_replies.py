"""How the server reads an app's reply to its sync PUT (both official SDKs' shapes)."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.server.sync_api import sync_problem


@pytest.mark.parametrize(
    ("status", "reply"),
    [
        (200, {"message": "Successfully registered", "modified": True}),  # TS
        (200, {"ok": True, "modified": False, "app_id": "a", "sync_id": "s"}),  # Python
    ],
)
def test_a_registered_app(status: int, reply: Any) -> None:
    assert sync_problem(status, reply) is None


@pytest.mark.parametrize(
    ("status", "reply", "problem"),
    [
        # TS: the register call's status becomes the PUT's, its error the message.
        (401, {"message": "Authentication failed", "modified": False}, "answered 401: Auth"),
        # Python: 200, with the server's error body passed on.
        (200, {"error": "Authentication failed", "status": 401}, "answered 401: Auth"),
        (500, "Internal Server Error", "answered 500: Internal Server Error"),
    ],
)
def test_a_refused_sync_is_reported(status: int, reply: Any, problem: str) -> None:
    found = sync_problem(status, reply)
    assert found is not None and found.startswith(problem)
