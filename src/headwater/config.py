"""Server settings: one frozen object built by the CLI from flags and `HEADWATER_*` variables."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from headwater.flow.retry import RetryPolicy
from headwater.protocol.events import DEFAULT_LIMITS, EventLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8288
DEFAULT_DATA_DIR = Path(".headwater")
#: Inngest's: 4 MiB of run state, less 1 KiB for the rest of the call (PROTOCOL §3.3).
DEFAULT_CALL_STATE_LIMIT_BYTES = 4 * 1024 * 1024 - 1024


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class Mode(StrEnum):
    #: `headwater dev`: any event key, no signing key, open API; meant for loopback.
    DEV = "dev"
    #: `headwater start`: event keys and a signing key required.
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    mode: Mode = Mode.DEV
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    db_url: str | None = None
    event_keys: frozenset[str] = field(default_factory=frozenset)
    signing_key: str | None = None
    signing_key_fallback: str | None = None
    limits: EventLimits = DEFAULT_LIMITS
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Apps to sync at start and every few seconds (`headwater dev -u URL`), PROTOCOL §3.2.
    app_urls: tuple[str, ...] = ()
    #: Ports probed for apps on this machine (`headwater dev` without --no-discovery), §4.1.
    discovery_ports: tuple[int, ...] = ()
    #: A call to an app bigger than this leaves the run's state for the SDK to fetch (`use_api`).
    call_state_limit_bytes: int = DEFAULT_CALL_STATE_LIMIT_BYTES
    #: Accepted by the dashboard's login besides the signing key (production mode).
    dashboard_password: str | None = field(default=None, repr=False)
    #: Forget ended runs and events older than this (`--retention`); None keeps everything.
    retention_ms: int | None = None

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'headwater.db'}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "keys.json"

    @property
    def server_kind(self) -> str:
        """What `X-Inngest-Server-Kind` says: Inngest SDKs change behaviour on it."""
        return "dev" if self.mode is Mode.DEV else "cloud"
