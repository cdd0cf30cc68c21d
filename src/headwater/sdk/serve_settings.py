"""What `hw.serve()` resolves before it answers anything: its keys, its mode, where it is reached.

`resolve_serve_settings` is a pure function of its arguments, an environment mapping and the
client's config, as `config.resolve_config` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from headwater.errors import ConfigurationError
from headwater.sdk.config import ClientConfig

DEFAULT_SERVE_PATH: Final = "/api/inngest"


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What `serve()` resolved: the keys, the mode, and where the app is reachable."""

    signing_key: str | None
    signing_key_fallback: str | None
    #: "dev" (no signatures checked) or "cloud" (every call must be signed).
    mode: str
    serve_origin: str | None
    serve_path: str


def resolve_serve_settings(
    env: Mapping[str, str],
    config: ClientConfig,
    *,
    serve_origin: str | None = None,
    serve_path: str = DEFAULT_SERVE_PATH,
    signing_key: str | None = None,
    signing_key_fallback: str | None = None,
) -> ServeSettings:
    """Arguments, then `HEADWATER_*`, then `INNGEST_*` variables (as `config.resolve_config`).

    The mode is dev when INNGEST_DEV says so, cloud when it says it is not, and otherwise cloud
    exactly when a signing key is set: an app with a key verifies every call. Cloud mode without a
    key is a ConfigurationError, since no call could be verified.
    """

    def first(*values: str | None) -> str | None:
        return next((v.strip() for v in values if v and v.strip()), None)

    key = first(signing_key, env.get("HEADWATER_SIGNING_KEY"), env.get("INNGEST_SIGNING_KEY"))
    fallback = first(
        signing_key_fallback,
        env.get("HEADWATER_SIGNING_KEY_FALLBACK"),
        env.get("INNGEST_SIGNING_KEY_FALLBACK"),
    )
    dev = config.dev if config.dev is not None else key is None
    if not dev and key is None:
        raise ConfigurationError(
            "serving in cloud mode (INNGEST_DEV=0) needs a signing key: pass signing_key= or set "
            "HEADWATER_SIGNING_KEY / INNGEST_SIGNING_KEY"
        )
    origin = first(serve_origin, env.get("HEADWATER_SERVE_ORIGIN"), env.get("INNGEST_SERVE_ORIGIN"))
    if origin is not None:
        if "://" not in origin:
            origin = f"https://{origin}"
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"serve_origin must be an http(s) origin, got {origin!r}")
        origin = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    raw_path = (serve_path or "").strip()
    path = "/" + raw_path.strip("/")
    if raw_path.endswith("/") and path != "/":
        path += "/"  # kept: under Starlette's Mount, only ".../prefix/" reaches the app
    return ServeSettings(
        signing_key=key,
        signing_key_fallback=fallback,
        mode="dev" if dev else "cloud",
        serve_origin=origin,
        serve_path=path if path != "/" else "",
    )


__all__ = ["DEFAULT_SERVE_PATH", "ServeSettings", "resolve_serve_settings"]
