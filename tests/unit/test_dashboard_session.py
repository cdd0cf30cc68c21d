"""The dashboard's session cookies, CSRF tokens and login check (server/dashboard/session.py)."""

from __future__ import annotations

from headwater.server.auth import hashed_signing_key
from headwater.server.dashboard.session import SessionKeys

KEY = "signkey-test-" + "ab" * 32


def keys(password: str | None = "s3cret") -> SessionKeys:
    return SessionKeys(login_required=True, signing_key=KEY, password=password)


def test_a_cookie_reads_back_as_its_session() -> None:
    session = keys().new_session(authenticated=True)
    assert keys().read(keys().cookie_value(session)) == session  # same key material, any process


def test_a_tampered_or_foreign_cookie_is_refused() -> None:
    session = keys().new_session(authenticated=False)
    cookie = keys().cookie_value(session)
    payload, _, signature = cookie.partition(".")
    forged = keys().cookie_value(keys().new_session(authenticated=True)).partition(".")[0]
    assert keys().read(f"{forged}.{signature}") is None
    assert keys(password="other").read(cookie) is None
    assert keys().read("garbage") is None
    assert keys().read(None) is None
    assert keys().read(f"{payload}.") is None


def test_an_expired_session_is_refused() -> None:
    session = keys().new_session(authenticated=True)
    expired = type(session)(session.sid, True, 1)
    assert keys().read(keys().cookie_value(expired)) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    first, second = keys().new_session(authenticated=True), keys().new_session(authenticated=True)
    token = keys().csrf_token(first)
    assert keys().csrf_ok(first, token)
    assert not keys().csrf_ok(second, token)
    assert not keys().csrf_ok(first, None)
    assert not keys().csrf_ok(first, "")


def test_login_accepts_the_signing_key_in_every_form_and_the_password() -> None:
    assert keys().login_ok(KEY)
    assert keys().login_ok("ab" * 32)
    assert keys().login_ok(hashed_signing_key(KEY))
    assert keys().login_ok("s3cret")
    assert not keys().login_ok("s3cre")
    assert not keys().login_ok("")
    assert not keys(password=None).login_ok("s3cret")
