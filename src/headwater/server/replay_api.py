"""REST v1 for replays: replay one run (`POST /v1/runs/{id}/replay`), bulk replays as jobs
(`POST /v1/replays`, listed newest first by `GET /v1/replays` in keyset pages (`limit`, `cursor`,
as bulk cancellations), watched with `GET /v1/replays/{id}`, stopped with DELETE or
`.../cancel`). The logic is the engine's (engine/replay.py); this module only speaks HTTP."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.engine.replay import Replays
from headwater.errors import ReplayError
from headwater.protocol.ids import is_ulid
from headwater.server.responses import api_data, api_error, rfc3339
from headwater.server.rest import find_job, parse_job_page, parse_rfc3339
from headwater.server.runs_api import run_json
from headwater.store.queries import ReplayJob
from headwater.store.runs import RunStatus

_STATUS_CODES = {
    "not_found": 404,
    "run_active": 409,
    "function_missing": 409,
    "step_not_found": 400,
    "invalid_request": 400,
}


def replay_job_json(job: ReplayJob) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "function_id": job.function_id,
        "from": rfc3339(job.created_after),
        "to": rfc3339(job.created_before),
        "statuses": [status.value for status in job.statuses],
        "state": job.state.value,
        "total": job.total,
        "replayed": job.replayed,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "ended_at": rfc3339(job.ended_at) if job.ended_at is not None else None,
        "error": job.error,
    }


def replay_error(exc: ReplayError) -> Response:
    return api_error(_STATUS_CODES.get(exc.code, 400), str(exc), exc.code)


async def _object_body(request: Request, *, optional: bool) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and optional:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ReplayError(f"the body is not valid JSON: {exc}", "invalid_request") from None
    if not isinstance(body, dict):
        raise ReplayError("the body must be a JSON object", "invalid_request")
    return body


def parse_bulk_replay(body: dict[str, Any]) -> tuple[str, int, int, list[RunStatus]]:
    """function_id, from, to (epoch ms) and statuses of a bulk replay request; ReplayError
    naming the field that is wrong."""
    function_id = body.get("function_id")
    if not isinstance(function_id, str) or not function_id:
        raise ReplayError(
            "function_id is required (a function's id, e.g. app-fn)", "invalid_request"
        )
    window: list[int] = []
    for name in ("from", "to"):
        value = body.get(name)
        if not isinstance(value, str):
            raise ReplayError(f"{name} is required (an RFC 3339 time)", "invalid_request")
        try:
            window.append(parse_rfc3339(value, name))
        except ValueError as exc:
            raise ReplayError(str(exc), "invalid_request") from None
    raw_statuses = body.get("statuses", ["Failed"])
    if not isinstance(raw_statuses, list) or not raw_statuses:
        raise ReplayError("statuses must be a non-empty list of run statuses", "invalid_request")
    statuses = []
    for value in raw_statuses:
        try:
            statuses.append(RunStatus(value))
        except ValueError:
            names = ", ".join(status.value for status in RunStatus)
            raise ReplayError(
                f"statuses: {value!r} is not a run status ({names})", "invalid_request"
            ) from None
    return function_id, window[0], window[1], statuses


def replay_routes(replays: Replays) -> list[Route]:
    async def replay_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not is_ulid(run_id):
            return api_error(400, "the run id must be a ULID", "invalid_id")
        try:
            body = await _object_body(request, optional=True)
            from_step = body.get("from_step")
            if from_step is not None and (not isinstance(from_step, str) or not from_step):
                raise ReplayError("from_step must be a step id (a string)", "invalid_request")
            run = await replays.replay_run(run_id.upper(), from_step)
        except ReplayError as exc:
            return replay_error(exc)
        body = run_json(run) | {"replay_of": run_id.upper(), "from_step": from_step}
        response = api_data(body)
        response.status_code = 201
        return response

    async def start_bulk(request: Request) -> Response:
        try:
            body = await _object_body(request, optional=False)
            function_id, after, before, statuses = parse_bulk_replay(body)
            job = await replays.start_job(function_id, after, before, statuses)
        except ReplayError as exc:
            return replay_error(exc)
        response = api_data(replay_job_json(job))
        response.status_code = 202
        return response

    async def get_job(request: Request) -> Response:
        job = await find_job(request.path_params["job_id"], "replay", replays.store.get_replay_job)
        return job if isinstance(job, Response) else api_data(replay_job_json(job))

    async def list_jobs(request: Request) -> Response:
        try:
            limit, cursor = parse_job_page(request, "replay")
        except ValueError as exc:
            return replay_error(ReplayError(str(exc), "invalid_request"))
        jobs = await replays.store.list_replay_jobs(limit, cursor)
        next_cursor = jobs[-1].job_id if len(jobs) == limit else None
        return api_data([replay_job_json(job) for job in jobs], next_cursor=next_cursor)

    async def stop_job(request: Request) -> Response:
        job = await find_job(request.path_params["job_id"], "replay", replays.store.get_replay_job)
        if isinstance(job, Response):
            return job
        if not await replays.stop_job(job.job_id):
            return api_error(409, f"the replay has already ended ({job.state.value})", "ended")
        stopped = await replays.store.get_replay_job(job.job_id)
        assert stopped is not None
        return api_data(replay_job_json(stopped))

    return [
        Route("/v1/runs/{run_id}/replay", replay_run, methods=["POST"]),
        Route("/v1/replays", start_bulk, methods=["POST"]),
        Route("/v1/replays", list_jobs, methods=["GET"]),
        Route("/v1/replays/{job_id}", get_job, methods=["GET"]),
        Route("/v1/replays/{job_id}", stop_job, methods=["DELETE"]),
        Route("/v1/replays/{job_id}/cancel", stop_job, methods=["POST"]),
    ]
