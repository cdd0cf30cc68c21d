"""Event ids: server-made ULIDs, optionally derived from the `x-inngest-event-id-seed` header.

Inngest's rule (PROTOCOL §1.6): the header is `<millis>,<base64 of exactly 10 bytes>`; event k of the
request (k counted from 1) gets the ULID whose time is `millis` and whose entropy is the 10 bytes
with their last 4 bytes, read as a big-endian uint32, increased by k (wrapping). A retried request
with the same header therefore gets the same ids.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from dataclasses import dataclass

from ulid import ULID

SEED_HEADER = "x-inngest-event-id-seed"
_ENTROPY_BYTES = 10
_MAX_MILLIS = (1 << 48) - 1


@dataclass(frozen=True, slots=True)
class IdSeed:
    millis: int
    entropy: bytes

    def header_value(self) -> str:
        return f"{self.millis},{base64.b64encode(self.entropy).decode('ascii')}"

    def ulid(self, index: int) -> str:
        """The id of the event at 1-based position `index` of the request."""
        counter = (int.from_bytes(self.entropy[6:], "big") + index) & 0xFFFFFFFF
        raw = self.millis.to_bytes(6, "big") + self.entropy[:6] + counter.to_bytes(4, "big")
        return str(ULID.from_bytes(raw))


def parse_seed(header: str | None) -> IdSeed | None:
    """The seed of a header value, or None when it is missing or malformed (then ids are random)."""
    if not header:
        return None
    millis_text, sep, entropy_text = header.partition(",")
    if not sep:
        return None
    try:
        millis = int(millis_text.strip())
        entropy = base64.b64decode(entropy_text.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None
    if not 0 <= millis <= _MAX_MILLIS or len(entropy) != _ENTROPY_BYTES:
        return None
    return IdSeed(millis, entropy)


def new_seed() -> IdSeed:
    """A fresh seed for one send; the client re-sends the same one on every retry."""
    return IdSeed(time.time_ns() // 1_000_000, os.urandom(_ENTROPY_BYTES))


def new_ulid() -> str:
    return str(ULID())


def is_ulid(text: str) -> bool:
    try:
        ULID.from_str(text)
    except ValueError:
        return False
    return True


def ulid_millis(text: str) -> int:
    return int(ULID.from_str(text).milliseconds)
