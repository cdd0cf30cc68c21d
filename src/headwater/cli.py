"""`headwater`: the command line (dev | start | send | events | keys | migrate)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from headwater import __version__
from headwater.config import (
    DEFAULT_CALL_STATE_LIMIT_BYTES,
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    DEFAULT_PORT,
    Mode,
    ServerSettings,
    is_loopback,
)
from headwater.crypto import (
    KeyFile,
    KeyRing,
    KeySource,
    StaticKeys,
    generate_key,
    key_ring_from_env,
)
from headwater.errors import ConfigurationError, HeadwaterError
from headwater.flow.retry import RetryPolicy
from headwater.protocol.durations import parse_duration_ms
from headwater.sdk.functions import FunctionDefinition

app = typer.Typer(
    name="headwater",
    help="Headwater: an event platform and durable-function engine, wire-compatible with Inngest.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Encryption keys of the `user` object.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
apps_app = typer.Typer(
    help="Apps that serve functions over HTTP (Inngest SDKs).", no_args_is_help=True
)
app.add_typer(apps_app, name="apps")
console = Console()
errors = Console(stderr=True)

ENV_DB_URL = "HEADWATER_DB_URL"
ENV_EVENT_KEYS = "HEADWATER_EVENT_KEYS"
ENV_SIGNING_KEY = "HEADWATER_SIGNING_KEY"
ENV_SIGNING_KEY_FALLBACK = "HEADWATER_SIGNING_KEY_FALLBACK"
ENV_ENCRYPTION_KEYS = "HEADWATER_ENCRYPTION_KEYS"
ENV_BLIND_INDEX_KEY = "HEADWATER_BLIND_INDEX_KEY"
#: Base of the retry backoff (default 1 s); tests and impatient demos lower it.
ENV_RETRY_BASE_MS = "HEADWATER_RETRY_BASE_MS"
#: Calls to apps bigger than this many bytes leave the run's state for the SDK to fetch.
ENV_CALL_STATE_LIMIT_BYTES = "HEADWATER_CALL_STATE_LIMIT_BYTES"
_SIGNING_KEY = re.compile(r"^(signkey-\w+-)?([0-9a-fA-F]{2})+$")

HostOption = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar=ENV_DB_URL, help="Database URL: sqlite:///path.db or postgresql://..."
    ),
]
DataDirOption = Annotated[
    Path, typer.Option(help="Where dev mode keeps its SQLite file and key file.")
]
#: The server a command talks to over HTTP, and the key its API needs in production.
ServerUrlOption = Annotated[str, typer.Option(envvar="HEADWATER_BASE_URL", help="Server URL.")]
ApiSigningKeyOption = Annotated[
    str | None, typer.Option(envvar=ENV_SIGNING_KEY, help="Signing key (production).")
]


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def _production_keys() -> KeySource | None:
    value = os.environ.get(ENV_ENCRYPTION_KEYS, "")
    if not value.strip():
        return None
    return StaticKeys(key_ring_from_env(value, os.environ.get(ENV_BLIND_INDEX_KEY, "")))


AppOption = Annotated[
    str | None,
    typer.Argument(
        help="Your app, as module:attribute (a Headwater instance), e.g. shop.app:hw: its functions "
        "run in this process."
    ),
]


def _load_functions(target: str | None) -> list[FunctionDefinition]:
    """The functions of `module:attribute` (a Headwater instance or a list of definitions)."""
    if not target:
        return []
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise _fail(f"app {target!r} must look like module:attribute, e.g. shop.app:hw")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _fail(f"cannot import {module_name!r}: {exc}") from None
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise _fail(f"{module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    functions = getattr(value, "functions", value)
    if not isinstance(functions, list | tuple) or not all(
        isinstance(f, FunctionDefinition) for f in functions
    ):
        raise _fail(f"{target!r} is neither a Headwater instance nor a list of functions")
    return list(functions)


def _retry_policy() -> RetryPolicy:
    base = os.environ.get(ENV_RETRY_BASE_MS)
    if base is None:
        return RetryPolicy()
    if not base.isdigit():
        raise _fail(f"{ENV_RETRY_BASE_MS} must be a whole number of milliseconds")
    return RetryPolicy(base_ms=int(base))


def _discovery_ports(own_port: int) -> tuple[int, ...]:
    from headwater.server.discovery import discovery_ports

    try:
        return discovery_ports(os.environ, exclude=[own_port])
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None


RetentionOption = Annotated[
    str | None,
    typer.Option(
        envvar="HEADWATER_RETENTION",
        help="Delete ended runs and events older than this (e.g. 30d, 12h); default: keep all.",
    ),
]


def _retention_ms(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        retention = parse_duration_ms(value)
    except ValueError as exc:
        raise _fail(f"--retention: {exc}") from None
    if retention < 3_600_000:
        raise _fail("--retention must be at least 1h")
    return retention


def _call_state_limit() -> int:
    value = os.environ.get(ENV_CALL_STATE_LIMIT_BYTES)
    if value is None:
        return DEFAULT_CALL_STATE_LIMIT_BYTES
    if not value.isdigit() or int(value) < 1024:
        raise _fail(f"{ENV_CALL_STATE_LIMIT_BYTES} must be a whole number of bytes, at least 1024")
    return int(value)


def _serve(
    settings: ServerSettings,
    keys: KeySource,
    log_level: str,
    functions: list[FunctionDefinition] | None = None,
) -> None:
    import uvicorn

    from headwater.server.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        create_app(settings, keys, functions=functions or []),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
        lifespan="on",
        server_header=False,
        date_header=False,
    )
    console.print(
        f"[bold]Headwater {__version__}[/] ({settings.mode} mode) on "
        f"[cyan]http://{settings.host}:{settings.port}[/], data in {settings.database_url}"
    )
    for function in functions or []:
        console.print(f"  function [bold]{function.slug}[/]")
    uvicorn.Server(config).run()


@app.command()
def dev(
    app_target: AppOption = None,
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    sdk_url: Annotated[
        list[str] | None,
        typer.Option(
            "--sdk-url",
            "-u",
            help="The URL of an app serving functions (e.g. http://127.0.0.1:3000/api/inngest): "
            "synced at start and every 5 s. Repeat for several apps.",
        ),
    ] = None,
    no_discovery: Annotated[
        bool,
        typer.Option(
            "--no-discovery",
            help="Do not probe this machine's usual ports (3000, 8000, 8080... or "
            "HEADWATER_DISCOVERY_PORTS) for apps to sync.",
        ),
    ] = False,
    retention: RetentionOption = None,
) -> None:
    """Run a dev server: any event key accepted, open API, loopback by default; apps serving
    functions on this machine's usual ports and paths are found and synced."""
    for url in sdk_url or []:
        if not url.startswith(("http://", "https://")):
            raise _fail(f"--sdk-url {url!r} must be an http(s) URL")
    settings = ServerSettings(
        mode=Mode.DEV,
        host=host,
        port=port,
        data_dir=data_dir,
        db_url=db,
        retry=_retry_policy(),
        app_urls=tuple(sdk_url or ()),
        discovery_ports=() if no_discovery else _discovery_ports(port),
        call_state_limit_bytes=_call_state_limit(),
        retention_ms=_retention_ms(retention),
    )
    if not is_loopback(host):
        # Dev mode trusts whoever connects: any event key, no signing key, a dashboard without a
        # login that shows every event's user decrypted.
        errors.print(
            f"[bold yellow]warning:[/] dev mode on {host} is open to anyone who can reach it (no "
            "event or signing key, the dashboard shows users decrypted); use `headwater start` "
            "for a server others can reach"
        )
    functions = _load_functions(app_target)
    keys: KeySource | None = _production_keys()
    if keys is None:
        keys = KeyFile.load_or_create(settings.key_file)
    _serve(settings, keys, log_level, functions)


@app.command()
def start(
    app_target: AppOption = None,
    event_key: Annotated[
        list[str] | None,
        typer.Option(
            help=f"An accepted event key (repeat for several; env {ENV_EVENT_KEYS}, comma-separated)."
        ),
    ] = None,
    signing_key: Annotated[
        str | None,
        typer.Option(envvar=ENV_SIGNING_KEY, help="Hex signing key for the API and SDKs."),
    ] = None,
    signing_key_fallback: Annotated[
        str | None,
        typer.Option(
            envvar=ENV_SIGNING_KEY_FALLBACK, help="The previous signing key, while rotating."
        ),
    ] = None,
    dashboard_password: Annotated[
        str | None,
        typer.Option(
            envvar="HEADWATER_DASHBOARD_PASSWORD",
            help="A password for the dashboard's login (the signing key is always accepted).",
        ),
    ] = None,
    host: HostOption = "0.0.0.0",
    port: PortOption = DEFAULT_PORT,
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    retention: RetentionOption = None,
) -> None:
    """Run in production: event keys, a signing key and encryption keys are required."""
    keys_given = list(event_key or [])
    keys_given += [k.strip() for k in os.environ.get(ENV_EVENT_KEYS, "").split(",") if k.strip()]
    if not keys_given:
        raise _fail(f"production mode needs at least one --event-key (or {ENV_EVENT_KEYS})")
    if not signing_key:
        raise _fail(f"production mode needs --signing-key (or {ENV_SIGNING_KEY})")
    for name, key in (
        ("--signing-key", signing_key),
        ("--signing-key-fallback", signing_key_fallback),
    ):
        if key and not _SIGNING_KEY.match(key):
            raise _fail(
                f"{name} must be an even-length hex string, optionally prefixed signkey-<env>-"
            )
    try:
        keys = _production_keys()
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    if keys is None:
        raise _fail(
            f"production mode needs {ENV_ENCRYPTION_KEYS} and {ENV_BLIND_INDEX_KEY} "
            "(run `headwater keys generate` to make them)"
        )
    settings = ServerSettings(
        mode=Mode.PRODUCTION,
        host=host,
        port=port,
        data_dir=data_dir,
        db_url=db,
        event_keys=frozenset(keys_given),
        signing_key=signing_key,
        signing_key_fallback=signing_key_fallback,
        retry=_retry_policy(),
        call_state_limit_bytes=_call_state_limit(),
        dashboard_password=dashboard_password or None,
        retention_ms=_retention_ms(retention),
    )
    _serve(settings, keys, log_level, _load_functions(app_target))


def _parse_json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _fail(f"{option} must be a JSON object")
    return value


@app.command()
def send(
    name: Annotated[str, typer.Argument(help="The event name, e.g. app/account.created")],
    data: Annotated[str | None, typer.Option(help="The event's data, a JSON object.")] = None,
    user: Annotated[str | None, typer.Option(help="The event's user, a JSON object.")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Idempotency id of the event.")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Server URL (default: HEADWATER_BASE_URL or local).")
    ] = None,
    event_key: Annotated[
        str | None, typer.Option(help="Event key (default: HEADWATER_EVENT_KEY).")
    ] = None,
) -> None:
    """Send one event and print its id."""
    from headwater.sdk import Headwater

    event: dict[str, Any] = {"name": name, "data": _parse_json_object(data, "--data")}
    if user is not None:
        event["user"] = _parse_json_object(user, "--user")
    if event_id:
        event["id"] = event_id
    client = Headwater(app_id="headwater-cli", base_url=url, event_key=event_key)
    try:
        result = client.send_sync(event)
    except HeadwaterError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()
    for event_internal_id in result.ids:
        console.print(event_internal_id)


@app.command()
def events(
    name: Annotated[str | None, typer.Option(help="Only events with this exact name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many events.")] = 20,
    url: ServerUrlOption = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
    signing_key: ApiSigningKeyOption = None,
) -> None:
    """Show a table of recent events, newest first."""
    import httpx

    params: dict[str, str | int] = {"limit": limit}
    if name:
        params["name"] = name
    headers = {"Authorization": f"Bearer {signing_key}"} if signing_key else {}
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/events", params=params, headers=headers, timeout=10
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {url}: {exc}") from None
    body = response.json()
    if response.status_code != 200:
        raise _fail(f"{response.status_code}: {body.get('error', body)}")
    table = Table(title=f"Recent events ({len(body['data'])})")
    for column in ("received", "name", "internal id", "id", "data"):
        table.add_column(column, overflow="fold")
    for event in body["data"]:
        data_text = orjson.dumps(event["data"]).decode()
        table.add_row(
            event["received_at"],
            event["name"],
            event["internal_id"],
            event["id"] if event["id"] != event["internal_id"] else "",
            data_text if len(data_text) <= 80 else data_text[:77] + "...",
        )
    console.print(table)


def _local_keys(data_dir: Path) -> tuple[KeySource, KeyFile | None]:
    production = _production_keys()
    if production is not None:
        return production, None
    key_file = KeyFile(data_dir / "keys.json")
    if not key_file.path.exists():
        raise _fail(f"no key file at {key_file.path} and {ENV_ENCRYPTION_KEYS} is not set")
    return key_file, key_file


@keys_app.command("rotate")
def keys_rotate(
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
) -> None:
    """Make a new active key (dev key file) and re-seal every older row with it.

    In production, put the new key first in HEADWATER_ENCRYPTION_KEYS on every process, keep the old
    one after it, then run this to re-seal the old rows; the old key can go once it reports 0 left.
    """
    from headwater.engine.key_rotation import count_to_reseal, reseal_all
    from headwater.store import open_store

    keys, key_file = _local_keys(data_dir)
    if key_file is not None:
        new_key = key_file.rotate()
        console.print(f"new active key [bold]{new_key.id}[/] written to {key_file.path}")
    settings = ServerSettings(data_dir=data_dir, db_url=db)

    async def run() -> int:
        if key_file is not None:
            # Running servers re-read the key file at most this often: until they have, they may
            # still seal new events with the old key. Sweep only after that, so that when this
            # command ends no row needs the old key and every server seals with the new one.
            await asyncio.sleep(KeyFile.RECHECK_SECONDS + 0.25)
        store = open_store(settings.database_url)
        await store.open()
        try:
            todo = await count_to_reseal(store, keys)
            with Progress(console=console, transient=False) as progress:
                task = progress.add_task("re-sealing user objects", total=todo)
                moved = await reseal_all(
                    store,
                    keys,
                    batch_size=batch_size,
                    on_progress=lambda n: progress.advance(task, n),
                )
            return moved
        finally:
            await store.close()

    moved = asyncio.run(run())
    console.print(f"re-sealed {moved} events with key [bold]{keys.ring().primary.id}[/]")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new HEADWATER_ENCRYPTION_KEYS and HEADWATER_BLIND_INDEX_KEY for production."""
    from headwater.crypto import KEY_BYTES, format_env_keys

    ring = KeyRing([generate_key()], os.urandom(KEY_BYTES))
    keys_value, index_value = format_env_keys(ring)
    console.print(f"{ENV_ENCRYPTION_KEYS}={keys_value}", soft_wrap=True)
    console.print(f"{ENV_BLIND_INDEX_KEY}={index_value}", soft_wrap=True)


@apps_app.command("sync")
def apps_sync(
    app_url: Annotated[
        str, typer.Argument(help="The app's serve URL, e.g. http://127.0.0.1:3000/api/inngest")
    ],
    url: ServerUrlOption = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
    signing_key: ApiSigningKeyOption = None,
) -> None:
    """Ask the server to sync an app now: it PUTs the app's URL and the app registers."""
    import httpx

    headers = {"Authorization": f"Bearer {signing_key}"} if signing_key else {}
    try:
        response = httpx.put(
            f"{url.rstrip('/')}/v1/apps/sync", json={"url": app_url}, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise _fail(f"{response.status_code}: {response.text[:200]}") from None
    if response.status_code != 200:
        raise _fail(f"{response.status_code}: {body.get('error', body)}")
    reply = body["data"]["reply"]
    modified = reply.get("modified") if isinstance(reply, dict) else None
    console.print(f"synced {app_url}" + ("" if modified is None else f" (modified: {modified})"))


@app.command()
def migrate(db: DbOption = None, data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Apply pending database migrations and exit (the server also does this at start)."""
    from headwater.store import open_store

    settings = ServerSettings(data_dir=data_dir, db_url=db)

    async def run() -> None:
        store = open_store(settings.database_url)
        await store.open()
        await store.close()

    asyncio.run(run())
    console.print(f"migrations applied to {settings.database_url}")


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def main() -> None:
    try:
        app()
    except ConfigurationError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
