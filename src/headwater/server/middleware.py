"""Pure ASGI middleware: the server-kind header on every response, and API authentication."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.server.auth import SigningKeys
from headwater.server.responses import api_error

#: The paths that need the signing key in production mode: /v1/ (REST), and /v0/ and /invoke/ too,
#: since run state and invocations are the signing key's business.
SIGNED_PREFIXES = ("/v1/", "/v0/", "/invoke/")


class ServerKindHeader:
    """Adds `X-Inngest-Server-Kind: dev|cloud`: Inngest SDKs read it (PROTOCOL §1.1)."""

    def __init__(self, app: ASGIApp, kind: str) -> None:
        self.app = app
        self.header = (b"x-inngest-server-kind", kind.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_kind(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_kind)


class RequireSigningKey:
    """Production mode: every path under the given prefixes needs `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, keys: SigningKeys, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.keys = keys
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"
            and scope["path"].startswith(self.prefixes)
            and not self.keys.accepts_bearer(Headers(scope=scope).get("authorization"))
        ):
            response = api_error(401, "Authentication failed", "unauthorized")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
