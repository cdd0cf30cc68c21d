"""Records of apps synced over the Inngest protocol (PROTOCOL §3.2) and of their functions."""

from __future__ import annotations

from dataclasses import dataclass

from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class AppRecord:
    """One synced app. `checksum` identifies the sync request that last changed it; `synced_at`
    is when it last synced, changed or not."""

    app_id: str
    url: str
    sdk: str
    framework: str
    checksum: str
    created_at: Millis
    synced_at: Millis


@dataclass(frozen=True, slots=True)
class AppFunctionRecord:
    """One function of an app: its config as the SDK sent it (JSON bytes), parsed by the engine."""

    slug: str
    app_id: str
    config_json: bytes
    synced_at: Millis
    archived_at: Millis | None = None
