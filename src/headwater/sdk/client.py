"""`Headwater`, the application's handle on a Headwater (or Inngest) server.

This module only wires things together: settings come from `config.py`, sending from `sender.py`.
It owns the pooled httpx clients, created on first use and reused, so that the one-liner
`await Headwater(app_id="shop").send({...})` works and a long-lived instance keeps its connections.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import os
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import httpx

from headwater.errors import ConfigurationError, FunctionDefinitionError
from headwater.protocol.events import DEFAULT_LIMITS, EventLimits
from headwater.sdk.config import ClientConfig, resolve_config
from headwater.sdk.flow_options import (
    NO_OPTIONS,
    Batch,
    Concurrency,
    Debounce,
    FlowOptions,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)
from headwater.sdk.functions import (
    DEFAULT_RETRIES,
    CancelOn,
    CronTrigger,
    EventTrigger,
    FunctionDefinition,
    Timeouts,
    Trigger,
    define_function,
)
from headwater.sdk.sender import (
    Backoff,
    EventSender,
    SendInput,
    SendResult,
    backoff_delay,
    drive_async,
    drive_sync,
)

if TYPE_CHECKING:
    from headwater.sdk.serve import ServeApp

SDK_NAME: Final = "headwater-py"


def sdk_version() -> str:
    """The installed version of the `headwater` package, or "0.0.0" when it is not installed."""
    try:
        return importlib.metadata.version("headwater")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class Headwater:
    """A client of one app: sends events (and, later, defines the app's functions).

    Settings are resolved once, here: explicit arguments, then `HEADWATER_*`, then `INNGEST_*`
    environment variables (see `headwater.sdk.config`). Connections are pooled; release them with
    `close()` / `aclose()` or by using the client as a (async) context manager.

    `transport` replaces httpx's network transport (tests pass an `httpx.MockTransport`), and
    `backoff(attempt) -> seconds` replaces the retry delay (tests pass `lambda _: 0`).
    """

    def __init__(
        self,
        app_id: str,
        *,
        base_url: str | None = None,
        event_key: str | None = None,
        event_api_base_url: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        limits: EventLimits | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id.strip():
            raise ConfigurationError(f"app_id must be a non-empty string, got {app_id!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if not timeout > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        self.app_id = app_id
        self.config: ClientConfig = resolve_config(
            os.environ,
            base_url=base_url,
            event_api_base_url=event_api_base_url,
            event_key=event_key,
        )
        agent = f"{SDK_NAME}:v{sdk_version()}"
        self._sender = EventSender(
            self.config.event_url,
            headers={"user-agent": agent, "x-inngest-sdk": agent},
            limits=limits or DEFAULT_LIMITS,
            max_attempts=max_attempts,
            backoff=backoff or backoff_delay,
        )
        self._timeout = httpx.Timeout(timeout)
        self._transport = transport
        self._lock = threading.Lock()
        self._sync_client: httpx.Client | None = None
        self._sync_closer: Callable[[], object] | None = None
        # An AsyncClient's connections belong to the event loop that opened them, so each loop
        # gets its own client; a loop that is garbage-collected takes its entry with it.
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

        self._functions: dict[str, FunctionDefinition] = {}

    def __repr__(self) -> str:
        return f"Headwater(app_id={self.app_id!r}, event_api={self.config.event_api_base_url!r})"

    # -- functions ---------------------------------------------------------------------------

    @staticmethod
    def on_event(event: str, *, if_: str | None = None) -> EventTrigger:
        """A trigger on events named `event` (`app/*` and `app/user.*` match families), when
        the CEL expression `if_` (which sees `event`) holds."""
        return EventTrigger(event, if_)

    @staticmethod
    def on_cron(cron: str) -> CronTrigger:
        """A schedule: five cron fields, optionally prefixed `TZ=<zone> `."""
        return CronTrigger(cron)

    @staticmethod
    def cancel_event(
        event: str,
        *,
        match: str | None = None,
        if_: str | None = None,
        timeout: timedelta | float | None = None,
    ) -> CancelOn:
        """A `cancel_on` rule: an event that cancels the function's matching runs."""
        return CancelOn(event, if_=if_, match=match, timeout=timeout)

    def function(
        self,
        *,
        id: str,
        trigger: Trigger | None = None,
        triggers: Sequence[Trigger] = (),
        name: str | None = None,
        retries: int = DEFAULT_RETRIES,
        cancel_on: Sequence[CancelOn] = (),
        timeouts: Timeouts | None = None,
        on_failure: Callable[..., Any] | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] = (),
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        priority: Priority | str | None = None,
        singleton: Singleton | None = None,
        idempotency: str | None = None,
    ) -> Callable[[Callable[..., Any]], FunctionDefinition]:
        """Define a durable function of this app. `async def f(ctx: Context)` or
        `def f(ctx: ContextSync)`; with no trigger it runs only when invoked.

        Flow control: `concurrency` (a limit, or up to two `Concurrency` rules), `throttle`,
        `rate_limit`, `debounce`, `batch` (the run gets `ctx.events`), `priority` (an expression
        giving seconds, or a `Priority`), `singleton`, `idempotency` (an expression whose value
        deduplicates runs for 24 hours)."""
        all_triggers = [*([trigger] if trigger is not None else []), *triggers]
        if isinstance(concurrency, int):
            limits: tuple[Concurrency, ...] = (Concurrency(concurrency),)
        elif isinstance(concurrency, Concurrency):
            limits = (concurrency,)
        else:
            limits = tuple(concurrency)
        flow = FlowOptions(
            concurrency=limits,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch=batch,
            priority=Priority(priority) if isinstance(priority, str) else priority,
            singleton=singleton,
            idempotency=idempotency,
        )

        def register(handler: Callable[..., Any]) -> FunctionDefinition:
            definition = define_function(
                self.app_id,
                handler,
                id=id,
                triggers=all_triggers,
                name=name,
                retries=retries,
                cancel_on=cancel_on,
                timeouts=timeouts,
                flow=None if flow == NO_OPTIONS else flow,
            )
            if id in self._functions:
                raise FunctionDefinitionError(f"app {self.app_id!r} already has a function {id!r}")
            failure = None
            if on_failure is not None:
                # As the official SDKs do: a function of its own, `<id>-failure`, triggered by
                # this function's `inngest/function.failed` events (PROTOCOL §3.11).
                failure = define_function(
                    self.app_id,
                    on_failure,
                    id=f"{id}-failure",
                    triggers=[
                        EventTrigger(
                            "inngest/function.failed",
                            f"event.data.function_id == '{definition.slug}'",
                        )
                    ],
                    retries=0,
                )
                if failure.id in self._functions:
                    raise FunctionDefinitionError(
                        f"app {self.app_id!r} already has a function {failure.id!r}"
                    )
            self._functions[id] = definition
            if failure is not None:
                self._functions[failure.id] = failure
            return definition

        return register

    @property
    def functions(self) -> list[FunctionDefinition]:
        """This app's functions, in definition order."""
        return list(self._functions.values())

    async def send(self, events: SendInput) -> SendResult:
        """Send one event or a list of events; return their ids in input order.

        Every event is validated first: a bad one raises EventValidationError and nothing is sent.
        Large lists go out as several requests, one after the other. Raises SendRejectedError when
        the server refuses a request (4xx, not retried) and SendFailedError when it cannot be
        reached or keeps failing (5xx) after `max_attempts`. When a later request of a split send
        fails, the earlier ones were already stored.
        """
        flow = self._sender.flow(events)
        return await drive_async(flow, await self._loop_client(), asyncio.sleep)

    def send_sync(self, events: SendInput) -> SendResult:
        """`send` for code without an event loop: the same rules, with blocking I/O."""
        flow = self._sender.flow(events)
        return drive_sync(flow, self._blocking_client(), time.sleep)

    def close(self) -> None:
        """Release the pooled connections of `send_sync` (use `aclose` for those of `send`)."""
        with self._lock:
            closer, self._sync_client, self._sync_closer = self._sync_closer, None, None
        if closer is not None:
            closer()

    async def aclose(self) -> None:
        """Release the pooled connections of `send` (on this event loop) and of `send_sync`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.pop(loop, None)
        if entry is not None:
            await entry[1].aclose()  # its `finally` closes the client
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def serve(
        self,
        *,
        serve_origin: str | None = None,
        serve_path: str = "/api/inngest",
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
    ) -> ServeApp:
        """An ASGI app serving this app's functions over HTTP, in Inngest's SDK protocol.

        Attach it at `serve_path` (Starlette: `Route("/api/inngest", hw.serve(), methods=["GET",
        "PUT", "POST"])`; under a `Mount`, pass `serve_path="/api/inngest/"`), then sync it (a PUT on that URL, e.g. `headwater dev -u URL`): a Headwater server, the
        Inngest dev server or Inngest Cloud then calls the functions through it. Functions
        defined after this call are served too.

        `serve_origin` is where the server reaches the app (else the origin of the sync request);
        the signing keys default to HEADWATER_SIGNING_KEY(_FALLBACK), then INNGEST_SIGNING_KEY
        (_FALLBACK). With a signing key (and INNGEST_DEV not set to dev), every call must carry a
        valid signature; see `headwater.sdk.serve`.
        """
        from headwater.sdk.serve import ServeApp, resolve_serve_settings

        settings = resolve_serve_settings(
            os.environ,
            self.config,
            serve_origin=serve_origin,
            serve_path=serve_path,
            signing_key=signing_key,
            signing_key_fallback=signing_key_fallback,
        )

        async def send_events(events: list[Any]) -> list[str]:
            return (await self.send(events)).ids

        return ServeApp(
            app_id=self.app_id,
            functions=lambda: list(self._functions.values()),
            config=self.config,
            settings=settings,
            sdk=f"{SDK_NAME}:v{sdk_version()}",
            http_client=self._loop_client,
            send_events=send_events,
            env=os.environ.get("HEADWATER_ENV") or os.environ.get("INNGEST_ENV") or None,
        )

    def _blocking_client(self) -> httpx.Client:
        with self._lock:
            if self._sync_client is None:
                transport = self._transport
                if transport is not None and not isinstance(transport, httpx.BaseTransport):
                    raise ConfigurationError(
                        f"transport {transport!r} is async-only; use `await send()`"
                    )
                client = httpx.Client(
                    transport=transport, timeout=self._timeout, verify=_ssl_context()
                )
                # Closed when this object is garbage-collected (or at exit) if `close()` never
                # is, so an unclosed client does not drop its sockets unclosed.
                self._sync_closer = weakref.finalize(self, client.close)
                self._sync_client = client
            return self._sync_client

    async def _loop_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.get(loop)
            if entry is not None:
                return entry[0]
            transport = self._transport
            if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
                raise ConfigurationError(f"transport {transport!r} is sync-only; use `send_sync()`")
            client = httpx.AsyncClient(
                transport=transport, timeout=self._timeout, verify=_ssl_context()
            )
            closer = _close_at_loop_end(client)
            self._async_clients[loop] = (client, closer)
        # Starting the closer registers it with the loop; it never suspends here, so no other
        # task runs between the registration above and the return below.
        await anext(closer)
        return client


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # httpx builds a fresh context per client otherwise, which takes 50-100 ms (reading the CA
    # bundle) and, in `send`, blocks the event loop; one context serves every client safely.
    return httpx.create_ssl_context()


async def _close_at_loop_end(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Close `client` on its own loop, even when the application never calls `aclose()`.

    asyncio finalizes a suspended async generator on the loop that started it: when the generator
    is garbage-collected (its Headwater is gone: the `await Headwater(...).send(...)` one-liner)
    and, at the latest, when `asyncio.run` ends (`loop.shutdown_asyncgens`). Without this, the
    pooled sockets would be dropped unclosed, with ResourceWarnings, once the loop is gone.
    """
    try:
        yield
    finally:
        await client.aclose()
