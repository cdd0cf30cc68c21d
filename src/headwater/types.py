"""Layer 0: type aliases shared by every layer."""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
JSONObject: TypeAlias = "dict[str, JSON]"

#: Epoch milliseconds: every time Headwater stores or sends is one of these.
Millis: TypeAlias = int
