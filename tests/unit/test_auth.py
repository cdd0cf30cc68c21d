"""Signing keys are accepted raw or hashed (as the Inngest SDKs send them), compared in constant time."""

from __future__ import annotations

import hashlib

from headwater.server.auth import EventKeys, SigningKeys, hashed_signing_key, strip_signing_prefix

KEY = "signkey-prod-" + "0123456789abcdef" * 4


def test_prefix_is_dropped() -> None:
    assert strip_signing_prefix(KEY) == "0123456789abcdef" * 4
    assert strip_signing_prefix("abcd") == "abcd"


def test_hashed_form_is_sha256_of_the_hex_decoded_key() -> None:
    assert (
        hashed_signing_key(KEY) == hashlib.sha256(bytes.fromhex("0123456789abcdef" * 4)).hexdigest()
    )


def test_bearer_accepts_raw_hashed_and_fallback() -> None:
    fallback = "signkey-prod-" + "ff" * 32
    keys = SigningKeys([KEY, fallback])
    assert keys.accepts_bearer(f"Bearer {KEY}")
    assert keys.accepts_bearer(f"Bearer signkey-prod-{hashed_signing_key(KEY)}")
    assert keys.accepts_bearer(f"bearer {hashed_signing_key(KEY)}")
    assert keys.accepts_bearer(f"Bearer {fallback}")
    assert not keys.accepts_bearer("Bearer signkey-prod-00")
    assert not keys.accepts_bearer("Bearer ")
    assert not keys.accepts_bearer(f"Basic {KEY}")
    assert not keys.accepts_bearer(None)


def test_no_signing_key_means_none_configured() -> None:
    assert not SigningKeys([None, ""])


def test_event_keys_dev_accepts_anything_production_only_listed() -> None:
    assert EventKeys([]).accepts("NO_EVENT_KEY_SET")
    production = EventKeys(["k1", "k2"])
    assert production.required
    assert production.accepts("k2")
    assert not production.accepts("k3")
    assert not production.accepts("")
