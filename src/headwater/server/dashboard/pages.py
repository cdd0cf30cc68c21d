"""The dashboard's pages (Jinja2 + htmx), served at / on the API's port.

Pages read through the store and act through the engine, as the REST API does, so the dashboard
needs no API key of its own: its requests are authorized by the session (session.py). Every
handler goes through `_page`, which attaches the session, enforces the login in production mode
and checks the CSRF token of every POST.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import anyio
import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from headwater import __version__
from headwater.clock import now_ms
from headwater.engine.invocations import invoke_function
from headwater.engine.runtime import Engine
from headwater.errors import CancellationError, EventValidationError, ReplayError
from headwater.protocol.ids import is_ulid
from headwater.sdk.registration import function_config
from headwater.server.dashboard.live import EventFeed, poll_events
from headwater.server.dashboard.login_limit import LoginAttempts
from headwater.server.dashboard.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionKeys,
)
from headwater.server.dashboard.views import (
    STATUS_TONE,
    build_timeline,
    form_time,
    format_duration,
    format_time,
    parse_form_time,
)
from headwater.server.sync_api import AppSyncer
from headwater.store import EventQuery
from headwater.store.queries import Cursor, EventPage, RunQuery
from headwater.store.runs import RunRecord, RunStatus

PAGE: Final = 30
#: How long a live stream may take to end once the server shuts down (it is at most rendering a
#: row) before it is cancelled.
LIVE_SHUTDOWN_GRACE_S: Final = 2.0
#: Config keys that are flow control (shown apart on a function's page).
FLOW_CONTROL_KEYS: Final = (
    "concurrency",
    "throttle",
    "rateLimit",
    "debounce",
    "batchEvents",
    "priority",
    "idempotency",
    "singleton",
)
STATS_WINDOW_MS: Final = 24 * 3_600_000
#: Counts on the apps page stop here (per function and status), so it stays fast with many
#: functions; a function's page counts up to `COUNT_CAP`.
OVERVIEW_COUNT_CAP: Final = 1_000
#: On every dashboard response: scripts only from our static files (htmx, app.js), no framing
#: (clickjacking), forms posting only here. Inline styles stay allowed: the timeline places its
#: bars with them.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none';"
        " form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("headwater.server.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_time
    env.filters["duration"] = format_duration
    env.filters["pretty"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    env.globals["tone"] = lambda status: STATUS_TONE.get(str(status), "neutral")
    env.globals["version"] = __version__
    return env


class BadInput(Exception):
    """A form or filter value that cannot be used; the message names the field."""


@dataclass(slots=True)
class Page:
    request: Request
    session: Session
    csrf: str
    production: bool
    form: dict[str, str]
    #: Every value of each field (checkbox groups).
    form_lists: dict[str, list[str]]


Handler = Callable[[Page], Awaitable[Response]]


def dashboard_routes(
    engine: Engine, syncer: AppSyncer, keys: SessionKeys, feed: EventFeed
) -> list[BaseRoute]:
    store = engine.store
    event_log = engine.event_log
    env = _environment()
    attempts = LoginAttempts()

    def render(page: Page, template: str, code: int = 200, /, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            csrf=page.csrf,
            production=page.production,
            authenticated=page.session.authenticated,
            path=page.request.url.path,
            **context,
        )
        return HTMLResponse(html, code)

    def _page(
        handler: Handler, *, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = keys.read(request.cookies.get(COOKIE))
            fresh = session is None
            if session is None:
                session = keys.new_session(authenticated=not keys.login_required)
            lists: dict[str, list[str]] = {}
            if request.method == "POST":
                body = (await request.body()).decode(errors="replace")
                lists = parse_qs(body, keep_blank_values=True)
            form = {key: values[-1] for key, values in lists.items()}
            page = Page(
                request, session, keys.csrf_token(session), keys.login_required, form, lists
            )
            if keys.login_required and not session.authenticated and not public:
                target = "/login?" + urlencode({"next": request.url.path})
                response: Response = RedirectResponse(target, 303)
                if request.headers.get("hx-request"):
                    response = Response(status_code=401, headers={"HX-Redirect": target})
            elif request.method == "POST" and not keys.csrf_ok(
                session, request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            ):
                response = render(
                    page,
                    "error.html",
                    403,
                    title="Refused",
                    message="This form has expired or did not come from this dashboard "
                    "(missing or wrong CSRF token). Reload the page and try again.",
                )
            else:
                try:
                    response = await handler(page)
                except BadInput as exc:
                    response = render(page, "error.html", 400, title="Bad input", message=str(exc))
            if fresh:
                set_session_cookie(request, response, session)
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    def set_session_cookie(request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            keys.cookie_value(session),
            max_age=(session.expires_at - now_ms()) // 1000,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    def cursor_filter(page: Page) -> Cursor | None:
        """The `cursor` query parameter (a list's next page), or None; BadInput if invalid."""
        value = page.request.query_params.get("cursor")
        if not value:
            return None
        try:
            return Cursor.parse(value)
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def time_filter(page: Page, name: str) -> int | None:
        try:
            return parse_form_time(page.request.query_params.get(name), name)
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def json_field(page: Page, name: str, *, required: bool = False) -> dict[str, Any]:
        text = page.form.get(name, "").strip()
        if not text:
            if required:
                raise BadInput(f"{name} is required (a JSON object)")
            return {}
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"{name} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadInput(f"{name} must be a JSON object")
        return value

    # -- events --------------------------------------------------------------------------------

    async def event_rows(events: list[Any]) -> list[dict[str, Any]]:
        rows = []
        for event in events:
            runs = await store.list_runs_for_event(event.internal_id)
            rows.append({"event": event, "runs": runs})
        return rows

    async def events(page: Page) -> Response:
        params = page.request.query_params
        name = params.get("name") or None
        after, before = time_filter(page, "from"), time_filter(page, "to")
        cursor = cursor_filter(page)
        query = EventPage(
            EventQuery(limit=PAGE, name=name, received_after=after, received_before=before),
            cursor,
        )
        records = await store.list_events_received(query)
        found = [event_log.open(record) for record in records]
        following = query.next_cursor(records)
        next_cursor = following.text() if following is not None else None
        live = cursor is None and before is None
        return render(
            page,
            "events.html",
            rows=await event_rows(found),
            name=name or "",
            time_from=form_time(after),
            time_to=form_time(before),
            next_cursor=next_cursor,
            live_url=("/events/live?" + urlencode({"name": name} if name else {}))
            if live
            else None,
            filters=urlencode({k: v for k, v in params.items() if k != "cursor"}),
        )

    async def live_events(page: Page) -> Response:
        name = page.request.query_params.get("name") or None
        template = env.get_template("_event_row.html")

        # Set by sse-starlette once the server starts shutting down: the stream then ends like a
        # finished response (cancelled instead, it would be cut off mid-response, which uvicorn
        # logs as an error and the browser sees as a broken connection).
        stop = anyio.Event()
        shared = store.apps_shared_between_processes  # several processes store events
        source = poll_events(store, name, stop) if shared else feed.subscribe(stop)

        async def stream() -> AsyncIterator[dict[str, str]]:
            async for record in source:
                if name is not None and record.name != name:
                    continue
                if name is None and record.name.startswith("inngest/"):
                    continue
                event = event_log.open(record)
                runs = await store.list_runs_for_event(record.internal_id)
                html = template.render(row={"event": event, "runs": runs}, fresh=True)
                yield {"event": "event", "data": html.replace("\n", " ")}

        return EventSourceResponse(
            stream(), ping=15, shutdown_event=stop, shutdown_grace_period=LIVE_SHUTDOWN_GRACE_S
        )

    async def event_detail(page: Page) -> Response:
        internal_id = page.request.path_params["internal_id"].upper()
        event = await event_log.get(internal_id) if is_ulid(internal_id) else None
        if event is None:
            return render(page, "error.html", 404, title="Not found", message="No such event.")
        runs = await store.list_runs_for_event(internal_id)
        return render(page, "event.html", event=event, runs=runs)

    async def event_runs(page: Page) -> Response:
        internal_id = page.request.path_params["internal_id"].upper()
        runs = await store.list_runs_for_event(internal_id) if is_ulid(internal_id) else []
        return render(page, "_event_runs.html", runs=runs, event_id=internal_id)

    async def send_event(page: Page) -> Response:
        name = page.form.get("name", "").strip()
        if not name:
            raise BadInput("name is required")
        event: dict[str, Any] = {"name": name, "data": json_field(page, "data")}
        user = json_field(page, "user")
        if user:
            event["user"] = user
        try:
            (internal_id,) = await event_log.append([event])
        except EventValidationError as exc:
            raise BadInput(str(exc)) from None
        if page.request.headers.get("hx-request"):
            return render(page, "_sent.html", internal_id=internal_id, name=name)
        return RedirectResponse(f"/events/{internal_id}", 303)

    async def resend_event(page: Page) -> Response:
        internal_id = page.request.path_params["internal_id"].upper()
        event = await event_log.get(internal_id) if is_ulid(internal_id) else None
        if event is None:
            raise BadInput("no such event")
        # A new id: the original's `id` would deduplicate the runs away.
        again: dict[str, Any] = {"name": event.name, "data": event.data}
        if event.user:
            again["user"] = event.user
        (new_id,) = await event_log.append([again])
        return RedirectResponse(f"/events/{new_id}", 303)

    # -- runs ----------------------------------------------------------------------------------

    def run_query(page: Page) -> RunQuery:
        params = page.request.query_params
        status = params.get("status") or None
        statuses: tuple[RunStatus, ...] = ()
        if status is not None:
            try:
                statuses = (RunStatus(status),)
            except ValueError:
                raise BadInput(f"status must be one of {[s.value for s in RunStatus]}") from None
        cursor = cursor_filter(page)
        return RunQuery(
            limit=PAGE,
            function_id=params.get("function") or None,
            statuses=statuses,
            created_after=time_filter(page, "from"),
            created_before=time_filter(page, "to"),
            cursor=cursor,
        )

    async def runs(page: Page) -> Response:
        query = run_query(page)
        found = await store.list_runs(query)
        next_cursor = query.next_cursor(found)
        params = page.request.query_params
        context: dict[str, Any] = {
            "runs": found,
            "next_cursor": next_cursor.text() if next_cursor else None,
            "functions": sorted(f.slug for f in engine.registry),
            "function": query.function_id or "",
            "status": params.get("status", ""),
            "statuses": [s.value for s in RunStatus],
            "time_from": form_time(query.created_after),
            "time_to": form_time(query.created_before),
            "filters": urlencode({k: v for k, v in params.items() if k != "cursor"}),
            "live": query.cursor is None,
        }
        if page.request.headers.get("hx-request"):
            return render(page, "_run_rows.html", **context)
        return render(page, "runs.html", **context)

    async def run_context(run: RunRecord) -> dict[str, Any]:
        steps = await store.list_steps(run.run_id)
        waits = await store.waits_of_run(run.run_id)
        link = await store.replay_link(run.run_id)
        copied = 0
        if link is not None and link.from_step is not None:
            original_steps = await store.list_steps(link.replay_of)
            copied = next(
                (i for i, s in enumerate(original_steps) if s.step_id == link.from_step),
                0,
            )
        timeline = build_timeline(run, steps, waits, now_ms(), copied_steps=copied)
        return {
            "run": run,
            "timeline": timeline,
            "steps": steps,
            "link": link,
            "replays": await store.replays_of(run.run_id),
            "output": orjson.loads(run.output_json) if run.output_json else None,
            "error": orjson.loads(run.error_json) if run.error_json else None,
            "active": not run.status.is_final,
        }

    async def run_detail(page: Page) -> Response:
        run_id = page.request.path_params["run_id"].upper()
        run = await store.get_run(run_id) if is_ulid(run_id) else None
        if run is None:
            return render(page, "error.html", 404, title="Not found", message="No such run.")
        context = await run_context(run)
        if page.request.headers.get("hx-request"):
            return render(page, "_run_body.html", **context)
        return render(page, "run.html", **context)

    async def cancel_run(page: Page) -> Response:
        run_id = page.request.path_params["run_id"].upper()
        if not is_ulid(run_id):
            raise BadInput("no such run")
        await engine.outcomes.cancel(run_id, "cancelled from the dashboard")
        return RedirectResponse(f"/runs/{run_id}", 303)

    async def replay_run(page: Page) -> Response:
        run_id = page.request.path_params["run_id"].upper()
        from_step = page.form.get("from_step") or None
        try:
            replay = await engine.replays.replay_run(run_id, from_step)
        except ReplayError as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(f"/runs/{replay.run_id}", 303)

    # -- apps and functions --------------------------------------------------------------------

    async def apps(page: Page) -> Response:
        stored = await store.list_apps()
        by_app: dict[str, list[Any]] = {}
        for definition in sorted(engine.registry, key=lambda d: d.slug):
            by_app.setdefault(definition.app_id, []).append(definition)
        since = now_ms() - STATS_WINDOW_MS
        # A smaller cap than a function's own page: this one counts for every function.
        stats = {
            slug: await store.count_runs(slug, since, now_ms() + 1, cap=OVERVIEW_COUNT_CAP)
            for slug in (d.slug for defs in by_app.values() for d in defs)
        }
        return render(
            page,
            "apps.html",
            apps=stored,
            by_app=by_app,
            stats=stats,
            failures=syncer.failures,
            synced_ids={app.app_id for app in stored},
        )

    async def function_detail(page: Page) -> Response:
        slug = page.request.path_params["slug"]
        definition = engine.registry.get(slug)
        if definition is None:
            return render(page, "error.html", 404, title="Not found", message="No such function.")
        config: dict[str, Any] = dict(function_config(definition, definition.url or "in-process"))
        if definition.url is not None:
            for record in await store.app_functions(definition.app_id):
                if record.slug == slug:
                    config = orjson.loads(record.config_json)
        flow = {key: config[key] for key in FLOW_CONTROL_KEYS if key in config}
        now = now_ms()
        windows = {
            label: await store.count_runs(slug, now - span, now + 1)
            for label, span in (("1 hour", 3_600_000), ("24 hours", STATS_WINDOW_MS))
        }
        recent = await store.list_runs(RunQuery(limit=15, function_id=slug))
        return render(
            page,
            "function.html",
            function=definition,
            config=config,
            flow=flow,
            windows=windows,
            recent=recent,
            triggers=[trigger.to_wire() for trigger in definition.triggers],
        )

    async def invoke(page: Page) -> Response:
        slug = page.request.path_params["slug"]
        try:
            run_id = await invoke_function(
                event_log, engine.registry, slug, json_field(page, "payload")
            )
        except ReplayError as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(f"/runs/{run_id}", 303)

    # -- replays -------------------------------------------------------------------------------

    async def replays(page: Page) -> Response:
        cursor = page.request.query_params.get("cursor") or None
        if cursor is not None and not is_ulid(cursor):
            raise BadInput("cursor must be the id of a replay (a ULID)")
        jobs = await store.list_replay_jobs(PAGE, cursor.upper() if cursor else None)
        now = now_ms()
        return render(
            page,
            "replays.html",
            jobs=jobs,
            next_cursor=jobs[-1].job_id if len(jobs) == PAGE else None,
            functions=sorted(f.slug for f in engine.registry),
            default_from=form_time(now - STATS_WINDOW_MS),
            default_to=form_time(now + 60_000),
            final=[s.value for s in RunStatus if s.is_final],
        )

    async def start_replay(page: Page) -> Response:
        form = page.form
        try:
            after = parse_form_time(form.get("from"), "from")
            before = parse_form_time(form.get("to"), "to")
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if after is None or before is None:
            raise BadInput("from and to are required")
        try:
            statuses = [RunStatus(value) for value in page.form_lists.get("statuses", [])]
            job = await engine.replays.start_job(form.get("function", ""), after, before, statuses)
        except (ValueError, ReplayError) as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(f"/replays/{job.job_id}", 303)

    async def replay_detail(page: Page) -> Response:
        job = await store.get_replay_job(page.request.path_params["job_id"].upper())
        if job is None:
            return render(page, "error.html", 404, title="Not found", message="No such replay.")
        fragment = bool(page.request.headers.get("hx-request"))
        return render(page, "_replay_body.html" if fragment else "replay.html", job=job)

    async def stop_replay(page: Page) -> Response:
        job_id = page.request.path_params["job_id"].upper()
        await engine.replays.stop_job(job_id)
        return RedirectResponse(f"/replays/{job_id}", 303)

    # -- bulk cancellations --------------------------------------------------------------------

    async def cancellations(page: Page) -> Response:
        cursor = page.request.query_params.get("cursor") or None
        if cursor is not None and not is_ulid(cursor):
            raise BadInput("cursor must be the id of a cancellation (a ULID)")
        jobs = await store.list_cancellations(PAGE, cursor.upper() if cursor else None)
        return render(
            page,
            "cancellations.html",
            jobs=jobs,
            next_cursor=jobs[-1].job_id if len(jobs) == PAGE else None,
            app_ids=sorted({f.app_id for f in engine.registry}),
            function_ids=sorted({f.id for f in engine.registry}),
            # A second ahead: the field has whole seconds, and runs started this second count.
            default_before=form_time(now_ms() + 1_000),
        )

    async def start_cancellation(page: Page) -> Response:
        """The fields of POST /v1/cancellations, from a form: the times as `datetime-local`
        values (UTC), an empty `if` as none."""
        form = page.form
        app_id, function_id = form.get("app_id", "").strip(), form.get("function_id", "").strip()
        if not app_id or not function_id:
            raise BadInput("app_id and function_id are required")
        try:
            after = parse_form_time(form.get("started_after"), "started_after")
            before = parse_form_time(form.get("started_before"), "started_before")
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if before is None:
            raise BadInput("started_before is required")
        condition = form.get("if", "").strip() or None
        try:
            job = await engine.cancellations.start_job(
                app_id, function_id, after or 0, before, condition
            )
        except CancellationError as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(f"/cancellations/{job.job_id}", 303)

    async def cancellation_detail(page: Page) -> Response:
        job_id = page.request.path_params["job_id"].upper()
        job = await store.get_cancellation(job_id) if is_ulid(job_id) else None
        if job is None:
            return render(
                page, "error.html", 404, title="Not found", message="No such cancellation."
            )
        fragment = bool(page.request.headers.get("hx-request"))
        return render(page, "_cancellation_body.html" if fragment else "cancellation.html", job=job)

    async def stop_cancellation(page: Page) -> Response:
        job_id = page.request.path_params["job_id"].upper()
        if not is_ulid(job_id):
            raise BadInput("no such cancellation")
        await engine.cancellations.stop_job(job_id)
        return RedirectResponse(f"/cancellations/{job_id}", 303)

    # -- login ---------------------------------------------------------------------------------

    async def login_form(page: Page) -> Response:
        return render(
            page,
            "login.html",
            next=page.request.query_params.get("next", "/"),
            failed=False,
            wait=0,
        )

    async def login(page: Page) -> Response:
        target = page.form.get("next") or "/"
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # no open redirect
        address = page.request.client.host if page.request.client else "unknown"
        wait_ms = attempts.wait_ms(address, now_ms())
        if wait_ms:
            seconds = -(-wait_ms // 1000)
            refused = render(page, "login.html", 429, next=target, failed=False, wait=seconds)
            refused.headers["Retry-After"] = str(seconds)
            return refused
        if not keys.login_ok(page.form.get("password", "")):
            attempts.failed(address, now_ms())
            return render(page, "login.html", 401, next=target, failed=True, wait=0)
        response = RedirectResponse(target, 303)
        # A new session id at login: one planted before it is worthless after.
        set_session_cookie(page.request, response, keys.new_session(authenticated=True))
        return response

    async def logout(page: Page) -> Response:
        response = RedirectResponse("/login" if keys.login_required else "/", 303)
        set_session_cookie(page.request, response, keys.new_session(authenticated=False))
        return response

    async def home(_: Page) -> Response:
        return RedirectResponse("/events", 303)

    static = StaticFiles(packages=[("headwater.server.dashboard", "static")])
    return [
        Route("/", _page(home), methods=["GET"]),
        Route("/login", _page(login_form, public=True), methods=["GET"]),
        Route("/login", _page(login, public=True), methods=["POST"]),
        Route("/logout", _page(logout, public=True), methods=["POST"]),
        Route("/events", _page(events), methods=["GET"]),
        Route("/events/live", _page(live_events), methods=["GET"]),
        Route("/events/send", _page(send_event), methods=["POST"]),
        Route("/events/{internal_id}", _page(event_detail), methods=["GET"]),
        Route("/events/{internal_id}/runs", _page(event_runs), methods=["GET"]),
        Route("/events/{internal_id}/resend", _page(resend_event), methods=["POST"]),
        Route("/runs", _page(runs), methods=["GET"]),
        Route("/runs/{run_id}", _page(run_detail), methods=["GET"]),
        Route("/runs/{run_id}/cancel", _page(cancel_run), methods=["POST"]),
        Route("/runs/{run_id}/replay", _page(replay_run), methods=["POST"]),
        Route("/apps", _page(apps), methods=["GET"]),
        Route("/functions/{slug}", _page(function_detail), methods=["GET"]),
        Route("/functions/{slug}/invoke", _page(invoke), methods=["POST"]),
        Route("/replays", _page(replays), methods=["GET"]),
        Route("/replays", _page(start_replay), methods=["POST"]),
        Route("/replays/{job_id}", _page(replay_detail), methods=["GET"]),
        Route("/replays/{job_id}/stop", _page(stop_replay), methods=["POST"]),
        Route("/cancellations", _page(cancellations), methods=["GET"]),
        Route("/cancellations", _page(start_cancellation), methods=["POST"]),
        Route("/cancellations/{job_id}", _page(cancellation_detail), methods=["GET"]),
        Route("/cancellations/{job_id}/stop", _page(stop_cancellation), methods=["POST"]),
        Mount("/static", static, name="static"),
    ]
