"""REST v1 reads (PROTOCOL §2): events, and erasure of a user's data. Envelope `{data, metadata}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.engine.event_log import EventLog, StoredEvent
from headwater.protocol.ids import is_ulid
from headwater.server.responses import api_data, api_error, rfc3339
from headwater.store import EventQuery

DEFAULT_PAGE = 20
MAX_PAGE = 100

J = TypeVar("J")


class BadQuery(Exception):
    pass


def event_json(event: StoredEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "internal_id": event.internal_id,
        "id": event.id,
        "name": event.name,
        "data": event.data,
        "user": event.user,
        "user_erased": event.user_erased,
        "ts": event.ts,
        "v": event.v,
        "received_at": rfc3339(event.received_at),
    }
    if event.meta is not None:
        body["meta"] = event.meta
    return body


def parse_rfc3339(value: str, name: str) -> int:
    """Epoch ms of an RFC 3339 time given as `name`; ValueError says what is wrong with it."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an RFC 3339 time such as 2024-05-01T12:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone (e.g. a trailing Z)")
    return int(moment.timestamp() * 1000)


async def find_job(
    job_id: str, job: str, get: Callable[[str], Awaitable[J | None]]
) -> J | Response:
    """The background job with this id (bulk replays, bulk cancellations), or the reply to give:
    400 for an id that is not a ULID, 404 for one that is not stored. `job` is what a job is
    called ("cancellation")."""
    if not is_ulid(job_id):
        return api_error(400, f"the {job} id must be a ULID", "invalid_id")
    found = await get(job_id.upper())
    if found is None:
        return api_error(404, f"{job.capitalize()} not found", "not_found")
    return found


def parse_job_page(request: Request, job: str) -> tuple[int, str | None]:
    """The `limit` and `cursor` of a list of jobs paged by id, newest first (bulk cancellations,
    bulk replays): the page size and the id to list before. ValueError naming the parameter that is
    wrong; `job` is what a job is called in it ("cancellation")."""
    limit_text = request.query_params.get("limit")
    limit = DEFAULT_PAGE
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}")
        limit = int(limit_text)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not is_ulid(cursor):
        raise ValueError(f"cursor must be the next_cursor of a previous page (a {job} id)")
    return limit, cursor.upper() if cursor else None


def _parse_time(params: Any, name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_rfc3339(value, name)
    except ValueError as exc:
        raise BadQuery(str(exc)) from None


def _parse_query(request: Request) -> EventQuery:
    params = request.query_params
    limit_text = params.get("limit")
    limit = DEFAULT_PAGE
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            raise BadQuery(f"limit must be an integer from 1 to {MAX_PAGE}")
        limit = int(limit_text)
    cursor = params.get("cursor") or None
    if cursor is not None and not is_ulid(cursor):
        raise BadQuery("cursor must be an event's internal_id (a ULID)")
    return EventQuery(
        limit=limit,
        before_id=cursor.upper() if cursor else None,
        name=params.get("name") or None,
        received_after=_parse_time(params, "received_after"),
        received_before=_parse_time(params, "received_before"),
    )


def rest_routes(event_log: EventLog) -> list[Route]:
    async def list_events(request: Request) -> Response:
        try:
            query = _parse_query(request)
        except BadQuery as exc:
            return api_error(400, str(exc), "invalid_query")
        events = await event_log.list(query)
        next_cursor = events[-1].internal_id if len(events) == query.limit else None
        return api_data([event_json(e) for e in events], next_cursor=next_cursor)

    async def get_event(request: Request) -> Response:
        internal_id = request.path_params["internal_id"]
        if not is_ulid(internal_id):
            return api_error(400, "the event id must be a ULID", "invalid_id")
        event = await event_log.get(internal_id.upper())
        if event is None:
            return api_error(404, "Event not found", "not_found")
        return api_data(event_json(event))

    async def erase_user(request: Request) -> Response:
        external_id = request.path_params["external_id"]
        erased = await event_log.erase_user(external_id)
        return api_data({"external_id": external_id, "erased": erased})

    return [
        Route("/v1/events", list_events, methods=["GET"]),
        Route("/v1/events/{internal_id}", get_event, methods=["GET"]),
        Route("/v1/users/{external_id:path}", erase_user, methods=["DELETE"]),
    ]
