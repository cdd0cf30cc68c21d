"""Sealing `user`: AES-256-GCM bound to the event id, key rotation, blind index, the key file."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from headwater.crypto import (
    NONCE_BYTES,
    HmacSha256,
    KeyFile,
    KeyRing,
    format_env_keys,
    generate_key,
    key_ring_from_env,
)
from headwater.errors import ConfigurationError, DecryptionError, UnknownKeyError

USER = {"external_id": "645ea000129f1c40109ca7ad", "email": "taylor@example.com"}


def ring(*key_ids: str) -> KeyRing:
    return KeyRing([generate_key(k) for k in key_ids or ("k1",)], os.urandom(32))


def test_seal_then_open_round_trips_and_hides_plaintext() -> None:
    keys = ring()
    sealed = keys.seal(USER, "01EVENT")
    assert b"taylor" not in sealed.ciphertext and b"645ea000" not in sealed.ciphertext
    assert sealed.key_id == "k1"
    assert keys.open(sealed.key_id, sealed.ciphertext, "01EVENT") == USER


def test_each_seal_uses_a_fresh_nonce() -> None:
    keys = ring()
    assert keys.seal(USER, "e").ciphertext != keys.seal(USER, "e").ciphertext


def test_tampering_is_detected() -> None:
    keys = ring()
    sealed = keys.seal(USER, "01EVENT")
    flipped = bytearray(sealed.ciphertext)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionError, match="failed authentication"):
        keys.open("k1", bytes(flipped), "01EVENT")


def test_ciphertext_moved_to_another_event_fails() -> None:
    keys = ring()
    sealed = keys.seal(USER, "01EVENT")
    with pytest.raises(DecryptionError):
        keys.open("k1", sealed.ciphertext, "01OTHER")


def test_errors_never_contain_the_plaintext() -> None:
    keys = ring()
    sealed = keys.seal(USER, "e1")
    with pytest.raises(DecryptionError) as caught:
        keys.open("k1", sealed.ciphertext, "e2")
    assert "taylor" not in str(caught.value)


def test_rotation_old_rows_open_and_reseal_moves_them() -> None:
    old = ring("old")
    sealed = old.seal(USER, "e")
    rotated = KeyRing([generate_key("new"), *old.keys], old.index_key)
    assert rotated.open(sealed.key_id, sealed.ciphertext, "e") == USER
    resealed = rotated.reseal(sealed, "e")
    assert resealed.key_id == "new"
    assert rotated.open("new", resealed.ciphertext, "e") == USER
    assert resealed.blind_index == sealed.blind_index  # erasure still finds rotated rows


def test_unknown_key_is_a_clear_error() -> None:
    sealed = ring("a").seal(USER, "e")
    with pytest.raises(UnknownKeyError, match="'a'"):
        ring("b").open(sealed.key_id, sealed.ciphertext, "e")


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_sha256_is_the_standard_hmac(key: bytes, message: bytes) -> None:
    # Keys shorter, as long as, and longer than SHA-256's 64-byte block.
    assert HmacSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_blind_index_is_hmac_sha256_of_the_external_id_under_the_index_key() -> None:
    keys = ring()
    expected = hmac.new(keys.index_key, USER["external_id"].encode(), hashlib.sha256).digest()
    assert keys.blind_index(USER["external_id"]) == expected
    assert keys.seal(USER, "01EVENT").blind_index == expected


def test_sealed_user_is_nonce_then_aes_gcm_with_the_internal_id_as_aad() -> None:
    # The stored format, spelled out with the cryptography primitives themselves.
    key = generate_key("k1")
    keys = KeyRing([key, generate_key("k0")], os.urandom(32))
    sealed = keys.seal(USER, "01EVENT")
    assert sealed.key_id == "k1"
    nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
    assert AESGCM(key.secret).decrypt(nonce, body, b"01EVENT") == orjson.dumps(USER)
    assert keys.seal(USER, "01EVENT").ciphertext[:NONCE_BYTES] != nonce  # a fresh nonce each time


def test_blind_index_is_keyed_and_only_for_external_ids() -> None:
    keys = ring()
    assert keys.blind_index_of_user(USER) == keys.blind_index(USER["external_id"])
    assert keys.blind_index_of_user({"email": "x"}) is None
    assert keys.blind_index_of_user({"external_id": 42}) == keys.blind_index("42")
    assert ring().blind_index("x") != keys.blind_index("x")


def test_env_format_round_trips() -> None:
    original = ring("a", "b")
    keys_value, index_value = format_env_keys(original)
    parsed = key_ring_from_env(keys_value, index_value)
    assert [k.id for k in parsed.keys] == ["a", "b"]
    assert parsed.blind_index("x") == original.blind_index("x")


@pytest.mark.parametrize(
    ("keys_value", "index_value", "message"),
    [
        ("nocolon", "AAAAAAAAAAAAAAAAAAAAAA==", "id:base64-key"),
        ("a:!!!", "AAAAAAAAAAAAAAAAAAAAAA==", "not valid base64"),
        ("a:AAAA", "AAAAAAAAAAAAAAAAAAAAAA==", "must be 32 bytes"),
        (f"a:{'A' * 43}=", "", "HEADWATER_BLIND_INDEX_KEY is required"),
    ],
)
def test_env_errors_are_clear(keys_value: str, index_value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        key_ring_from_env(keys_value, index_value)


def test_key_repr_hides_secret() -> None:
    key = generate_key("k")
    assert repr(key) == "EncryptionKey(id='k')"
    assert key.secret.hex() not in repr(ring())


def test_key_file_is_created_private_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "keys.json"
    key_file = KeyFile.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = key_file.ring()
    sealed = first.seal(USER, "e")
    new_key = key_file.rotate()
    again = KeyFile(path).ring()
    assert again.primary.id == new_key.id
    assert again.open(sealed.key_id, sealed.ciphertext, "e") == USER
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A process that loaded the file earlier sees the rotation on reload.
    assert key_file.reload().primary.id == new_key.id


def test_corrupt_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot read key file"):
        KeyFile(path).ring()
