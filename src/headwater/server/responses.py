"""JSON responses in the two shapes Headwater speaks: the Event API's and REST v1's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from headwater.clock import now_ms
from headwater.types import Millis


def json_body(body: Any) -> bytes:
    return orjson.dumps(body)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_body(body), status, headers, media_type="application/json")


def ingest_error_body(status: int, message: str) -> bytes:
    """The Event API's error shape, which both official SDKs parse (PROTOCOL §1.5, §4.4)."""
    return json_body({"ids": [], "status": status, "error": message})


def api_data(data: Any, **metadata: Any) -> Response:
    """REST v1's envelope `{data, metadata}` (PROTOCOL §2.1)."""
    return json_response(
        {
            "data": data,
            "metadata": {"fetched_at": rfc3339(now_ms()), "cached_until": None, **metadata},
        }
    )


def api_error(status: int, message: str, code: str) -> Response:
    """REST v1's error shape `{error, status}`, with a stable `code` to branch on."""
    return json_response({"error": message, "status": status, "code": code}, status)


def rfc3339(millis: Millis) -> str:
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
