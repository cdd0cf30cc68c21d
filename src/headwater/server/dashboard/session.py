"""The dashboard's sessions: a signed cookie, a CSRF token per session, and the login check.

Every browser gets a session cookie on its first page: `<payload>.<signature>`, the payload being
base64url JSON `{sid, auth, exp}` and the signature HMAC-SHA256 over it with a key derived from the
server's signing key (so every process of a deployment accepts the same cookies, and rotating the
key logs everyone out). HttpOnly and SameSite=Lax; Secure when served over HTTPS.

The CSRF token of a session is HMAC(key, "csrf:" + sid): forms carry it in a hidden `csrf` field,
htmx requests in the `X-CSRF-Token` header; every state-changing request must present it, in dev
mode too (a page on another site could otherwise post to a dashboard on localhost).

In production mode pages need an authenticated session: logging in (with the signing key or the
configured dashboard password) issues a new session id, so a session id planted before login is
worthless after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

import orjson

from headwater.clock import now_ms
from headwater.server.auth import SigningKeys

COOKIE: Final = "hw_session"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
#: How long a login lasts.
SESSION_MS: Final = 12 * 3_600_000


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    authenticated: bool
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens; checks login secrets."""

    def __init__(
        self,
        *,
        login_required: bool,
        signing_key: str | None,
        password: str | None,
    ) -> None:
        self.login_required = login_required
        self._signing_keys = SigningKeys([signing_key])
        self._password = password.encode() if password else None
        if signing_key or password:
            material = f"headwater-dashboard\0{signing_key or ''}\0{password or ''}".encode()
            self._key = hashlib.sha256(material).digest()
        else:
            # Dev mode without keys: sessions last as long as the process.
            self._key = secrets.token_bytes(32)

    def new_session(self, *, authenticated: bool) -> Session:
        return Session(secrets.token_urlsafe(18), authenticated, now_ms() + SESSION_MS)

    def cookie_value(self, session: Session) -> str:
        payload = _b64(
            orjson.dumps(
                {"sid": session.sid, "auth": session.authenticated, "exp": session.expires_at}
            )
        )
        return f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None if it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = orjson.loads(_unb64(payload))
            session = Session(str(body["sid"]), bool(body["auth"]), int(body["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > now_ms() else None

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.sid}")

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented), self.csrf_token(session))

    def login_ok(self, secret: str) -> bool:
        """The signing key (as is or hashed, with or without its prefix) or the password."""
        secret = secret.strip()
        if not secret:
            return False
        matched = self._signing_keys.accepts_bearer(f"Bearer {secret}")
        if self._password is not None:
            matched |= hmac.compare_digest(secret.encode(), self._password)
        return matched

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())
