"""Where the client sends events: the base URLs and the event key, resolved once.

`resolve_config` is a pure function of its arguments and an environment mapping, so every rule
below is testable without touching `os.environ`. The first value found wins:

    base URL        base_url=  > HEADWATER_BASE_URL > INNGEST_BASE_URL > INNGEST_DEV (a URL)
                    > http://127.0.0.1:8288
    event API URL   event_api_base_url= > base_url= > HEADWATER_EVENT_API_BASE_URL
                    > HEADWATER_BASE_URL > INNGEST_EVENT_API_BASE_URL > INNGEST_BASE_URL
                    > INNGEST_DEV (a URL) > http://127.0.0.1:8288
    event key       event_key= > HEADWATER_EVENT_KEY > INNGEST_EVENT_KEY > NO_EVENT_KEY_SET

Explicit arguments beat the environment as a whole, and `HEADWATER_*` beats `INNGEST_*` as a whole:
a leftover Inngest variable must not redirect a client that was pointed at Headwater. Inside one
tier the event-specific setting beats the general one. Empty values count as unset, as in the
Inngest SDKs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

from headwater.errors import ConfigurationError

#: The dev server's address (PROTOCOL §4.1: port 8288).
DEFAULT_BASE_URL: Final = "http://127.0.0.1:8288"
#: Inngest's placeholder key for dev servers; Headwater's dev server accepts any key.
DEFAULT_EVENT_KEY: Final = "NO_EVENT_KEY_SET"

_TRUE: Final = frozenset({"1", "true"})
_FALSE: Final = frozenset({"0", "false"})


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The resolved settings of a client. URLs carry no trailing slash."""

    base_url: str
    event_api_base_url: str
    event_key: str
    #: True or False when INNGEST_DEV says so, None when it says nothing.
    dev: bool | None = None

    @property
    def event_url(self) -> str:
        """The ingest endpoint: `{event_api_base_url}/e/{event_key}`, any path prefix kept."""
        return f"{self.event_api_base_url}/e/{quote(self.event_key, safe='')}"


def resolve_config(
    env: Mapping[str, str],
    *,
    base_url: str | None = None,
    event_api_base_url: str | None = None,
    event_key: str | None = None,
) -> ClientConfig:
    """Resolve the client settings from explicit arguments, then `env` (see the module docstring).

    Raises ConfigurationError naming the argument or variable whose value is unusable.
    """
    dev, dev_url = _parse_inngest_dev(env.get("INNGEST_DEV"))
    tail: list[tuple[str, str | None]] = [
        ("INNGEST_BASE_URL", env.get("INNGEST_BASE_URL")),
        ("INNGEST_DEV", dev_url),
        ("default", DEFAULT_BASE_URL),
    ]
    base = _normalize_url(
        *_first(
            [("base_url", base_url), ("HEADWATER_BASE_URL", env.get("HEADWATER_BASE_URL")), *tail]
        )
    )
    event_base = _normalize_url(
        *_first(
            [
                ("event_api_base_url", event_api_base_url),
                ("base_url", base_url),
                ("HEADWATER_EVENT_API_BASE_URL", env.get("HEADWATER_EVENT_API_BASE_URL")),
                ("HEADWATER_BASE_URL", env.get("HEADWATER_BASE_URL")),
                ("INNGEST_EVENT_API_BASE_URL", env.get("INNGEST_EVENT_API_BASE_URL")),
                *tail,
            ]
        )
    )
    _, key = _first(
        [
            ("event_key", event_key),
            ("HEADWATER_EVENT_KEY", env.get("HEADWATER_EVENT_KEY")),
            ("INNGEST_EVENT_KEY", env.get("INNGEST_EVENT_KEY")),
            ("default", DEFAULT_EVENT_KEY),
        ]
    )
    return ClientConfig(base_url=base, event_api_base_url=event_base, event_key=key, dev=dev)


def _first(candidates: list[tuple[str, str | None]]) -> tuple[str, str]:
    """The first (source, value) whose value is not empty; the list always ends with a default."""
    for source, value in candidates:
        if value is not None and value.strip():
            return source, value.strip()
    raise AssertionError("the candidate list must end with a default")  # pragma: no cover


def _parse_inngest_dev(value: str | None) -> tuple[bool | None, str | None]:
    """INNGEST_DEV is a boolean ("1"/"true", "0"/"false") or the dev server's URL."""
    text = (value or "").strip()
    if text.lower() in _TRUE:
        return True, None
    if text.lower() in _FALSE:
        return False, None
    if "://" in text:
        return True, text
    # Other values are ignored, as the Inngest SDKs ignore them, rather than breaking an app whose
    # environment was written for another tool.
    return None, None


def _normalize_url(source: str, value: str) -> str:
    """Check that `value` is an http(s) URL and drop its trailing slash; the path prefix stays."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it validates the port (ValueError when out of range)
    except ValueError as exc:
        raise ConfigurationError(f"{source} is not a valid URL: {value!r} ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{source} must be an http:// or https:// URL with a host, got {value!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{source} must not have a query or a fragment, got {value!r}")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"
