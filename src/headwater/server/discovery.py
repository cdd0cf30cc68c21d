"""Finding apps that serve functions on this machine, as Inngest's dev server does (PROTOCOL §4.1).

`headwater dev` probes the usual local ports: first a TCP connect to each, all at once, then a GET
on each usual path of the ports that accepted; a reply with an `X-Inngest-SDK` header is an app
(both official SDKs and `hw.serve()` set it on every reply). What is found is synced like a
`-u` URL, and re-synced every few seconds; the ports are probed again on every round, so an app
started after the server is found too. `--no-discovery` turns it off.

The port list is Inngest's plus `$PORT`; `HEADWATER_DISCOVERY_PORTS` (comma-separated) replaces
it, e.g. for a test that serves an app on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import httpx

from headwater.errors import ConfigurationError

#: Inngest's list (Rails, Express, Next, Django, Vite, Astro, Redwood, wrangler...) and a few more
#: usual development ports (3030, 3300, 4000).
DEFAULT_PORTS: Final = (
    80,
    443,
    *range(3000, 3011),
    3030,
    3300,
    4000,
    4321,
    5000,
    5173,
    8000,
    8080,
    8081,
    8787,
    8888,
    *range(8910, 8916),
)
#: Where frameworks usually mount the handler.
PATHS: Final = (
    "/api/inngest",
    "/x/inngest",
    "/.netlify/functions/inngest",
    "/.redwood/functions/inngest",
)
#: Inngest's probe timeout.
PROBE_TIMEOUT_S: Final = 2.0
ENV_PORTS: Final = "HEADWATER_DISCOVERY_PORTS"


def discovery_ports(env: Mapping[str, str], *, exclude: Iterable[int] = ()) -> tuple[int, ...]:
    """The ports to probe: `HEADWATER_DISCOVERY_PORTS` if set, else Inngest's list and `$PORT`;
    never the server's own (`exclude`). ConfigurationError for a value that is not a port list."""
    override = env.get(ENV_PORTS, "").strip()
    if override:
        ports = [_port(text, ENV_PORTS) for text in override.split(",") if text.strip()]
    else:
        ports = list(DEFAULT_PORTS)
        own = env.get("PORT", "").strip()
        if own.isdigit() and 0 < int(own) < 65536:
            ports.append(int(own))
    excluded = set(exclude)
    return tuple(dict.fromkeys(p for p in ports if p not in excluded))


def _port(text: str, source: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(f"{source}: {value!r} is not a TCP port (1-65535)")
    return int(value)


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _is_app(client: httpx.AsyncClient, url: str) -> bool:
    try:
        reply = await client.get(url)
    except httpx.HTTPError:
        return False
    return "x-inngest-sdk" in reply.headers


async def discover(
    ports: Sequence[int], paths: Sequence[str] = PATHS, host: str = "127.0.0.1"
) -> list[str]:
    """The URLs `http://{host}:{port}{path}` where an app answers, in port then path order."""
    open_ports = [
        port
        for port, accepted in zip(
            ports, await asyncio.gather(*(_accepts(host, p) for p in ports)), strict=True
        )
        if accepted
    ]
    if not open_ports:
        return []
    found: list[str] = []
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False) as client:
        for port in open_ports:
            # The port is open, so these are quick; one at a time, as Inngest does.
            for path in paths:
                url = f"http://{host}:{port}{path}"
                if await _is_app(client, url):
                    found.append(url)
    return found
