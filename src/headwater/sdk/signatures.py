"""Signing keys on the SDK side (PROTOCOL §3.6): request signatures and the hashed bearer key.

Only the standard library: the SDK ships without the server's dependencies.

- A call from the server carries `X-Inngest-Signature: t=<unix seconds>&s=<hex>`, where the hex is
  HMAC-SHA256 of `body + t` under the signing key without its `signkey-<env>-` prefix, taken as
  UTF-8 text (not hex-decoded), as both official SDKs verify it.
- Requests from the SDK to the API carry `Authorization: Bearer <hashed key>`: the prefix, then
  the hex SHA-256 of the hex-decoded key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import parse_qs

#: How far a signature's time may be from ours (either way), as the TS SDK checks it.
SIGNATURE_WINDOW_SECONDS: Final = 300
_PREFIX: Final = re.compile(r"^signkey-\w+-")


def signing_key_prefix(key: str) -> str:
    """`signkey-<env>-`, or "" for a bare key."""
    match = _PREFIX.match(key.strip())
    return match.group(0) if match else ""


def strip_signing_key(key: str) -> str:
    """The key without its `signkey-<env>-` prefix: the HMAC key of signatures."""
    key = key.strip()
    return key[len(signing_key_prefix(key)) :]


def hash_signing_key(key: str) -> str:
    """The bearer form: `signkey-<env>-` + hex sha256 of the hex-decoded key (as the SDKs send it).

    A key that is not hex is hashed as its UTF-8 text, so a malformed key still yields a stable
    value rather than an exception at request time.
    """
    body = strip_signing_key(key)
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = body.encode()
    return f"{signing_key_prefix(key)}{hashlib.sha256(raw).hexdigest()}"


def sign(body: bytes, key: str, unix_seconds: int) -> str:
    """The `X-Inngest-Signature` value of `body` signed with `key` at `unix_seconds`."""
    mac = hmac.new(
        strip_signing_key(key).encode(), body + str(unix_seconds).encode(), hashlib.sha256
    )
    return f"t={unix_seconds}&s={mac.hexdigest()}"


class SignatureError(Exception):
    """A request's signature is missing, malformed, stale, or made with none of our keys."""


def verify(
    header: str | None,
    body: bytes,
    keys: Sequence[str | None],
    *,
    clock: Callable[[], float] = time.time,
    window: int = SIGNATURE_WINDOW_SECONDS,
) -> None:
    """Check `header` against `body` under each of `keys` (the signing key, then its fallback).

    Raises SignatureError saying why it does not verify. Every key is tried even after a match, and
    digests are compared in constant time, so timing tells nothing about which part differed.
    """
    usable = [key for key in keys if key]
    if not usable:
        raise SignatureError("no signing key is configured to verify the request")
    if not header:
        raise SignatureError("the request is not signed (no X-Inngest-Signature header)")
    fields = parse_qs(header.strip(), keep_blank_values=True)
    stamps, digests = fields.get("t", []), fields.get("s", [])
    if len(stamps) != 1 or len(digests) != 1 or not stamps[0].isdigit():
        raise SignatureError("the X-Inngest-Signature header is malformed")
    stamp = int(stamps[0])
    if abs(clock() - stamp) > window:
        raise SignatureError("the request's signature has expired")
    presented = digests[0].strip().lower().encode()
    matched = False
    for key in usable:
        expected = sign(body, key, stamp).rpartition("&s=")[2].encode()
        matched |= hmac.compare_digest(presented, expected)
    if not matched:
        raise SignatureError("the request's signature does not match the signing key")
