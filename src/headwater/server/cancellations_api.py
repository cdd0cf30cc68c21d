"""REST v1 for bulk cancellations, as Inngest's API has them: `POST /v1/cancellations` stores a
job and starts it, `GET /v1/cancellations` lists them newest first (keyset pages: `limit`,
`cursor`), `GET /v1/cancellations/{id}` shows one with its progress, `DELETE` stops it. The logic
is the engine's (engine/cancellations.py); this module only speaks HTTP."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.engine.cancellations import Cancellations
from headwater.errors import CancellationError
from headwater.server.responses import api_data, api_error, rfc3339
from headwater.server.rest import find_job, parse_job_page, parse_rfc3339
from headwater.store.cancellations import CancellationJob


def cancellation_json(job: CancellationJob) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "app_id": job.app_id,
        "function_id": job.function_id,
        "started_after": rfc3339(job.started_after) if job.started_after else None,
        "started_before": rfc3339(job.started_before),
        "if": job.condition,
        "state": job.state.value,
        "cancelled": job.cancelled,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "ended_at": rfc3339(job.ended_at) if job.ended_at is not None else None,
        "error": job.error,
    }


def _invalid(message: str) -> CancellationError:
    return CancellationError(message, "invalid_request")


def _time_field(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(f"{name} is required (an RFC 3339 time)")
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be an RFC 3339 time string")
    try:
        return parse_rfc3339(value, name)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def parse_cancellation(body: object) -> tuple[str, str, int, int, str | None]:
    """app_id, function_id, started_after, started_before (epoch ms) and `if` of a request;
    CancellationError naming the field that is wrong."""
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object")
    app_id, function_id = body.get("app_id"), body.get("function_id")
    if not isinstance(app_id, str) or not app_id:
        raise _invalid("app_id is required (the app's id, a string)")
    if not isinstance(function_id, str) or not function_id:
        raise _invalid("function_id is required (the function's id within the app, a string)")
    before = _time_field(body, "started_before", required=True)
    after = _time_field(body, "started_after", required=False) or 0
    assert before is not None
    condition = body.get("if")
    if condition is not None and (not isinstance(condition, str) or not condition.strip()):
        raise _invalid("if must be a CEL expression (a non-empty string)")
    return app_id, function_id, after, before, condition


def _error(exc: CancellationError) -> Response:
    return api_error(400, str(exc), exc.code)


def cancellation_routes(cancellations: Cancellations) -> list[Route]:
    store = cancellations.store

    async def start(request: Request) -> Response:
        try:
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                raise _invalid(f"the body is not valid JSON: {exc}") from None
            job = await cancellations.start_job(*parse_cancellation(body))
        except CancellationError as exc:
            return _error(exc)
        response = api_data(cancellation_json(job))
        response.status_code = 201
        return response

    async def list_jobs(request: Request) -> Response:
        try:
            limit, cursor = parse_job_page(request, "cancellation")
        except ValueError as exc:
            return _error(_invalid(str(exc)))
        jobs = await store.list_cancellations(limit, cursor)
        next_cursor = jobs[-1].job_id if len(jobs) == limit else None
        return api_data([cancellation_json(job) for job in jobs], next_cursor=next_cursor)

    async def get_job(request: Request) -> Response:
        job = await find_job(
            request.path_params["cancellation_id"], "cancellation", store.get_cancellation
        )
        return job if isinstance(job, Response) else api_data(cancellation_json(job))

    async def stop_job(request: Request) -> Response:
        job = await find_job(
            request.path_params["cancellation_id"], "cancellation", store.get_cancellation
        )
        if isinstance(job, Response):
            return job
        if not await cancellations.stop_job(job.job_id):
            return api_error(
                409, f"the cancellation has already ended ({job.state.value})", "ended"
            )
        stopped = await store.get_cancellation(job.job_id)
        assert stopped is not None
        return api_data(cancellation_json(stopped))

    return [
        Route("/v1/cancellations", start, methods=["POST"]),
        Route("/v1/cancellations", list_jobs, methods=["GET"]),
        Route("/v1/cancellations/{cancellation_id}", get_job, methods=["GET"]),
        Route("/v1/cancellations/{cancellation_id}", stop_job, methods=["DELETE"]),
    ]
