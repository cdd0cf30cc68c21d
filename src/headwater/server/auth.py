"""Keys: event keys for ingest, the signing key for the API (PROTOCOL §2.1, §3.6).

A signing key looks like `signkey-<env>-<hex>`. Callers may present it as is, or hashed the way
the Inngest SDKs send it (`signkey-<env>-<hex sha256 of the hex-decoded key>`); both sides drop the
`signkey-<env>-` prefix and compare in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from headwater.sdk.signatures import hash_signing_key, strip_signing_key

#: The key without its `signkey-<env>-` prefix (one implementation, shared with the SDK).
strip_signing_prefix = strip_signing_key


def hashed_signing_key(key: str) -> str:
    """The form the SDKs put in `Authorization: Bearer …`: sha256 of the hex-decoded key (without
    the prefix, which both sides drop before comparing)."""
    return strip_signing_key(hash_signing_key(key))


class SigningKeys:
    """The current signing key and its fallback (the key being rotated out)."""

    def __init__(self, keys: Iterable[str | None]) -> None:
        self._accepted: list[bytes] = []
        for key in keys:
            if key:
                self._accepted.append(strip_signing_prefix(key).encode())
                self._accepted.append(hashed_signing_key(key).encode())

    def __bool__(self) -> bool:
        return bool(self._accepted)

    def accepts_bearer(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = strip_signing_prefix(token).encode()
        # Compare against every accepted form without stopping early.
        matched = False
        for accepted in self._accepted:
            matched |= hmac.compare_digest(presented, accepted)
        return matched


class EventKeys:
    """Production ingest keys; an empty set (dev mode) accepts any key."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [key.encode() for key in keys if key]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def accepts(self, key: str) -> bool:
        if not self._keys:
            return True
        presented = key.encode()
        matched = False
        for accepted in self._keys:
            matched |= hmac.compare_digest(presented, accepted)
        return matched
